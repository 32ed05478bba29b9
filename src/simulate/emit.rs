//! What the simulator writes: Auto Scaling activities (terminations with their causes, launches),
//! each instance's log lines (routine, then the runtime's OOM or crash output at death), the
//! export files in the layouts the file backends read, and the `epitaph.toml` that scans them.

use super::*;

pub(super) fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(super) fn cause_text(
    cause: CauseCategory,
    id: &str,
    t: DateTime<Utc>,
    rng: &mut Rng,
) -> String {
    let at = t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let n = rng.int(3, 9);
    match cause {
        CauseCategory::HealthCheck => {
            if rng.unit() < 0.5 {
                format!("At {at} an instance was taken out of service in response to an ELB system health check failure.")
            } else {
                format!("At {at} an instance was taken out of service in response to an EC2 health check indicating it has been terminated or stopped.")
            }
        }
        CauseCategory::ScaleIn => format!(
            "At {at} a monitor alarm TargetTracking-web-AlarmLow-{} in state ALARM triggered policy cpu-target-50 changing the desired capacity from {n} to {}.  At {at} an instance was taken out of service in response to a difference between desired and actual capacity, shrinking the capacity from {n} to {}.  At {at} instance {id} was selected for termination.",
            rng.hex(8), n - 1, n - 1
        ),
        CauseCategory::InstanceRefresh => format!(
            "At {at} an instance was taken out of service in response to an instance refresh.  At {at} instance {id} was selected for termination."
        ),
        CauseCategory::UserRequest => format!(
            "At {at} instance {id} was taken out of service in response to a user request, shrinking the capacity from {n} to {}.",
            n - 1
        ),
        CauseCategory::MaxLifetime => format!(
            "At {at} an instance was taken out of service in response to the instance reaching its maximum instance lifetime."
        ),
        CauseCategory::Rebalance => format!(
            "At {at} an instance was taken out of service in response to an EC2 instance rebalance recommendation."
        ),
        CauseCategory::SpotInterruption => format!(
            "At {at} an instance was taken out of service in response to an EC2 Spot Instance interruption notice."
        ),
        CauseCategory::Unknown => format!("At {at} an instance was removed."),
    }
}

pub(super) fn write_activities(out: &mut Output, d: &Deployment, inst: &Instance, rng: &mut Rng) {
    let launch = launch_activity(d, inst, rng);
    let list = out.activities.entry(d.asg.clone()).or_default();
    list.push(launch);
    list.push(json!({
        "ActivityId": format!("{}-{}-{}-{}-{}", rng.hex(8), rng.hex(4), rng.hex(4), rng.hex(4), rng.hex(12)),
        "AutoScalingGroupName": d.asg,
        "Description": format!("Terminating EC2 instance: {}", inst.id),
        "Cause": cause_text(inst.cause, &inst.id, inst.terminated, rng),
        "StartTime": rfc(inst.terminated),
        "EndTime": rfc(inst.terminated + Duration::seconds(rng.int(30, 400))),
        "StatusCode": "Successful",
        "Progress": 100,
        "Details": "{\"Subnet ID\":\"subnet-0a1b2c3d\",\"Availability Zone\":\"us-east-1a\"}",
    }));
}

pub(super) fn launch_activity(d: &Deployment, inst: &Instance, rng: &mut Rng) -> serde_json::Value {
    let launch_at = inst.launch.to_rfc3339_opts(SecondsFormat::Secs, true);
    json!({
        "ActivityId": format!("{}-{}-{}-{}-{}", rng.hex(8), rng.hex(4), rng.hex(4), rng.hex(4), rng.hex(12)),
        "AutoScalingGroupName": d.asg,
        "Description": format!("Launching a new EC2 instance: {}", inst.id),
        "Cause": format!("At {launch_at} an instance was started in response to a difference between desired and actual capacity, increasing the capacity from 3 to 4."),
        "StartTime": rfc(inst.launch),
        "EndTime": rfc(inst.launch + Duration::seconds(40)),
        "StatusCode": "Successful",
        "Progress": 100,
        "Details": "{\"Subnet ID\":\"subnet-0a1b2c3d\",\"Availability Zone\":\"us-east-1a\"}",
    })
}

/// Routine lines a service prints while it works; some are hard negatives on purpose.
pub(super) fn routine_line(runtime: &str, rng: &mut Rng) -> String {
    let ms = rng.int(2, 180);
    let path = *rng.pick(&[
        "/api/cart",
        "/api/items",
        "/healthz",
        "/api/orders",
        "/api/search",
    ]);
    let status = *rng.pick(&[200, 200, 200, 201, 204, 304, 404]);
    match runtime {
        "node" => match rng.int(0, 9) {
            0 => format!("[{}:0x5f1c2d0]   {} ms: Scavenge 812.3 (845.1) -> 801.7 (846.2) MB, 3.2 / 0.0 ms  (average mu = 0.991, current mu = 0.987) allocation failure;", rng.int(1, 9), rng.int(10000, 99999)),
            _ => json!({"level": "info", "time": 1, "msg": format!("GET {path} {status} {ms}ms"), "pid": 17}).to_string(),
        },
        "jvm" => match rng.int(0, 9) {
            0 => format!("[GC (Allocation Failure) [PSYoungGen: 65536K->10720K(76288K)] 131072K->76256K(251392K), 0.0{} secs]", rng.int(100, 999)),
            1 => "Started with JVM flags -Xmx3g -XX:+ExitOnOutOfMemoryError -XX:+HeapDumpOnOutOfMemoryError".to_string(),
            _ => format!("INFO  [http-nio-8080-exec-{}] c.e.web.RequestLog - GET {path} {status} {ms}ms", rng.int(1, 40)),
        },
        "python" => format!("INFO:     10.0.{}.{}:5{} - \"GET {path} HTTP/1.1\" {status} OK", rng.int(0, 9), rng.int(1, 250), rng.int(1000, 9999)),
        "dotnet" => format!("info: Microsoft.AspNetCore.Hosting.Diagnostics[2] Request finished HTTP/1.1 GET {path} - {status} - {ms}.0 ms"),
        _ => match rng.int(0, 12) {
            0 => "oom_score_adj set to -500 for the agent process".to_string(),
            _ => format!("level=info msg=\"request served\" method=GET path={path} status={status} duration={ms}ms"),
        },
    }
}

/// The lines a runtime prints as it dies of memory.
pub(super) fn oom_lines(runtime: &str, rng: &mut Rng) -> Vec<String> {
    match runtime {
        "node" => vec![
            "".into(),
            "<--- Last few GCs --->".into(),
            "".into(),
            format!("[1:0x63a2f40] {} ms: Mark-sweep 2042.7 (2083.4) -> 2041.9 (2083.9) MB, 1862.4 / 0.0 ms  (average mu = 0.112, current mu = 0.011) allocation failure; scavenge might not succeed", rng.int(40000, 90000)),
            "".into(),
            "<--- JS stacktrace --->".into(),
            "".into(),
            rng.pick(&[
                "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory",
                "FATAL ERROR: Ineffective mark-compacts near heap limit Allocation failed - JavaScript heap out of memory",
                "FATAL ERROR: CALL_AND_RETRY_LAST Allocation failed - JavaScript heap out of memory",
            ])
            .to_string(),
            " 1: 0xb7b3e0 node::Abort() [node]".into(),
            " 2: 0xa8c8aa  [node]".into(),
            " 3: 0xd52d20 v8::Utils::ReportOOMFailure(v8::internal::Isolate*, char const*, bool) [node]".into(),
        ],
        "jvm" => vec![
            format!("Exception in thread \"http-nio-8080-exec-{}\" java.lang.OutOfMemoryError: Java heap space", rng.int(1, 40)),
            "\tat java.base/java.util.Arrays.copyOf(Arrays.java:3537)".into(),
            "\tat java.base/java.lang.AbstractStringBuilder.ensureCapacityInternal(AbstractStringBuilder.java:228)".into(),
        ],
        "python" => vec![
            "Traceback (most recent call last):".into(),
            "  File \"/app/worker/render.py\", line 88, in render_page".into(),
            "    buf = bytearray(size)".into(),
            "MemoryError".into(),
        ],
        "dotnet" => vec![
            "Unhandled exception. System.OutOfMemoryException: Exception of type 'System.OutOfMemoryException' was thrown.".into(),
            "   at System.Collections.Generic.List`1.set_Capacity(Int32 value)".into(),
        ],
        _ => vec![
            "fatal error: runtime: out of memory".into(),
            "".into(),
            "runtime stack:".into(),
            "runtime.throw({0x9b2e1a?, 0x400000?})".into(),
        ],
    }
}

/// The lines a runtime prints as it crashes for a non-memory reason.
pub(super) fn crash_lines(runtime: &str, rng: &mut Rng) -> Vec<String> {
    match runtime {
        "go" => vec![
            "panic: runtime error: invalid memory address or nil pointer dereference".into(),
            format!(
                "[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x{}]",
                rng.hex(6)
            ),
            "".into(),
            format!("goroutine {} [running]:", rng.int(10, 900)),
            "main.(*PaymentHandler).Authorize(0xc000112000, {0xa1b2c0, 0xc0001a4000})".into(),
        ],
        "rust" => vec![
            "thread 'tokio-runtime-worker' panicked at src/handlers/order.rs:212:37:".into(),
            "called `Option::unwrap()` on a `None` value".into(),
            "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace".into(),
        ],
        _ => vec![
            "/app/dist/server.js:1187".into(),
            "        const id = req.session.user.id;".into(),
            "                                    ^".into(),
            "".into(),
            "TypeError: Cannot read properties of undefined (reading 'id')".into(),
            "    at authorize (/app/dist/server.js:1187:37)".into(),
            "".into(),
            "Node.js v20.11.1".into(),
        ],
    }
}

pub(super) fn log_lines(
    d: &Deployment,
    inst: &Instance,
    rng: &mut Rng,
) -> Vec<(DateTime<Utc>, String)> {
    let mut lines = vec![
        (
            inst.launch + Duration::seconds(20),
            format!("Starting {} version {}", d.asg, d.version),
        ),
        (
            inst.launch + Duration::seconds(22),
            "Listening on 0.0.0.0:8080".to_string(),
        ),
    ];
    // Planned terminations: the service works until the group stops it.
    let end = if inst.cause.is_planned() {
        inst.terminated
    } else {
        inst.death
    };
    let mut t = end - Duration::seconds(LOG_TAIL_SECS);
    while t < end - Duration::seconds(1) {
        lines.push((t, routine_line(d.runtime, rng)));
        t += Duration::milliseconds(rng.int(2000, 12000));
    }
    let closing: Vec<String> = match (d.archetype, inst.cause.is_planned()) {
        (_, true) => vec![
            "Received SIGTERM, shutting down gracefully".into(),
            format!("Closed {} idle connections", rng.int(1, 40)),
        ],
        (Archetype::Leak | Archetype::Spike, _) => oom_lines(d.runtime, rng),
        (Archetype::Crash, _) => crash_lines(d.runtime, rng),
        // Killed by the kernel: the application's logs just stop.
        _ => Vec::new(),
    };
    let at = if inst.cause.is_planned() {
        inst.terminated + Duration::seconds(2)
    } else {
        inst.death
    };
    for (i, l) in closing.into_iter().enumerate() {
        lines.push((at + Duration::milliseconds(i as i64), l));
    }
    lines
}

pub(super) fn write_files(
    out: &Path,
    deployments: &[Deployment],
    instances: &[Instance],
    running: &[Instance],
    o: &Output,
) -> Result<()> {
    // Activities: one describe-scaling-activities document per group, newest first as AWS returns them.
    for (asg, acts) in &o.activities {
        let mut acts = acts.clone();
        acts.sort_by(|a, b| b["StartTime"].as_str().cmp(&a["StartTime"].as_str()));
        let doc = json!({ "Activities": acts });
        write(
            &out.join("activities").join(format!("{asg}.json")),
            &serde_json::to_vec_pretty(&doc).map_err(json_err)?,
        )?;
    }
    // Logs: JSON lines for even groups, filter-log-events output for odd ones.
    let group_index: BTreeMap<&str, usize> = GROUP_NAMES
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, i))
        .collect();
    for (gi, (asg, lines)) in o.logs.iter().enumerate() {
        let odd = group_index.get(asg.as_str()).copied().unwrap_or(gi) % 2 == 1;
        if odd {
            let events: Vec<serde_json::Value> = lines
                .iter()
                .enumerate()
                .map(|(i, (id, t, m))| json!({"logStreamName": id, "timestamp": t.timestamp_millis(), "message": m, "ingestionTime": t.timestamp_millis() + 1500, "eventId": format!("{:056}", i)}))
                .collect();
            let doc = json!({"events": events, "searchedLogStreams": []});
            write(
                &out.join("logs")
                    .join(format!("{asg}.filter-log-events.json")),
                &serde_json::to_vec(&doc).map_err(json_err)?,
            )?;
        } else {
            let mut buf = Vec::new();
            for (id, t, m) in lines {
                serde_json::to_writer(
                    &mut buf,
                    &json!({"timestamp": rfc(*t), "instance_id": id, "message": m}),
                )
                .map_err(json_err)?;
                buf.push(b'\n');
            }
            write(&out.join("logs").join(format!("{asg}.jsonl")), &buf)?;
        }
    }
    // Metrics: a Prometheus query_range response for every third group, CSV otherwise.
    for (gi, (asg, series)) in o.metrics.iter().enumerate() {
        let prom = group_index.get(asg.as_str()).copied().unwrap_or(gi) % 3 == 2;
        if prom {
            let result: Vec<serde_json::Value> = series
                .iter()
                .map(|(id, pts)| {
                    let values: Vec<serde_json::Value> = pts.iter().map(|(t, v)| json!([t.timestamp(), format!("{v}")])).collect();
                    json!({"metric": {"__name__": "mem_used_percent", "instance_id": id, "asg": asg}, "values": values})
                })
                .collect();
            let doc =
                json!({"status": "success", "data": {"resultType": "matrix", "result": result}});
            write(
                &out.join("metrics").join(format!("{asg}.prometheus.json")),
                &serde_json::to_vec(&doc).map_err(json_err)?,
            )?;
        } else {
            let mut buf = Vec::new();
            writeln!(buf, "timestamp,instance_id,value").map_err(|e| Error::io(out, e))?;
            for (id, pts) in series {
                for (t, v) in pts {
                    writeln!(
                        buf,
                        "{},{id},{v}",
                        t.to_rfc3339_opts(SecondsFormat::Secs, true)
                    )
                    .map_err(|e| Error::io(out, e))?;
                }
            }
            write(&out.join("metrics").join(format!("{asg}.csv")), &buf)?;
        }
    }
    // Inventory as recorded while the instances lived (the group's listing), and EC2's view at
    // the end: the dead ones `terminated`, the others `running`.
    let mut groups: BTreeMap<&str, Vec<serde_json::Value>> = BTreeMap::new();
    let mut reservations = Vec::new();
    let dead = instances.iter().map(|i| (i, "terminated"));
    for (inst, state) in dead.chain(running.iter().map(|i| (i, "running"))) {
        let d = &deployments[inst.deployment];
        groups.entry(d.asg.as_str()).or_default().push(json!({
            "InstanceId": inst.id,
            "InstanceType": "m6i.large",
            "AvailabilityZone": "us-east-1a",
            "LifecycleState": "InService",
            "HealthStatus": "Healthy",
            "LaunchTemplate": {"LaunchTemplateId": d.template_id, "LaunchTemplateName": d.asg, "Version": d.version.to_string()},
            "ProtectedFromScaleIn": false
        }));
        reservations.push(json!({"Instances": [{
            "InstanceId": inst.id,
            "LaunchTime": inst.launch.to_rfc3339_opts(SecondsFormat::Secs, true),
            "State": {"Name": state},
            "Placement": {"AvailabilityZone": "us-east-1a"},
            "Tags": [{"Key": "aws:autoscaling:groupName", "Value": d.asg}, {"Key": "Deployment", "Value": d.key()}]
        }]}));
    }
    let asg_doc = json!({"AutoScalingGroups": groups.into_iter().map(|(name, insts)| json!({
        "AutoScalingGroupName": name, "MinSize": 1, "MaxSize": 20, "DesiredCapacity": 4, "Instances": insts
    })).collect::<Vec<_>>()});
    write(
        &out.join("inventory")
            .join("describe-auto-scaling-groups.json"),
        &serde_json::to_vec_pretty(&asg_doc).map_err(json_err)?,
    )?;
    write(
        &out.join("inventory").join("describe-instances.json"),
        &serde_json::to_vec_pretty(&json!({"Reservations": reservations})).map_err(json_err)?,
    )?;
    Ok(())
}

pub(super) fn config_text(opts: &SimOptions) -> String {
    let since = opts.end - Duration::hours(WINDOW_HOURS + 1);
    format!(
        r#"# Written by `epitaph simulate --seed {seed} --asgs {asgs} --instances {n}`.
# Scans exactly this simulated fleet with the file backends; paths are relative to this file.

[scan]
since = "{since}"
until = "{until}"

[deployment]
identity = "launch_template"

[state]
path = "epitaph.db"

[sources.activities]
kind = "file"
path = "activities"
inventory = "inventory"

[sources.logs]
kind = "file"
path = "logs"

[sources.metrics]
kind = "file"
path = "metrics"
unit = "percent"
"#,
        seed = opts.seed,
        asgs = opts.asgs,
        n = opts.instances,
        since = since.to_rfc3339_opts(SecondsFormat::Secs, true),
        until = (opts.end + Duration::hours(1)).to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}

pub(super) fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

pub(super) fn json_err(e: serde_json::Error) -> Error {
    Error::Store(format!("cannot encode simulator output: {e}"))
}
