//! The HTML report in a real browser: headless Chromium (Debian's `chromium`, installed by
//! scripts/test.sh) loads the report that `scan --format html` writes, with a probe script
//! appended to a copy; the probe measures the laid-out page (chart boxes, every series inside
//! its chart, no horizontal overflow, styles applied) and Chromium's `--dump-dom` hands the
//! measurements back. And markup planted in the last words stays text there: no element, no
//! script run.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Fleet;

const PROBE: &str = r#"<script>
(function () {
  var r = {charts: [], sections: 0, overflow: false, badge: ""};
  document.querySelectorAll("svg.chart").forEach(function (svg) {
    var b = svg.getBoundingClientRect();
    var lines = svg.querySelectorAll("polyline.series");
    var inside = 0;
    lines.forEach(function (l) {
      var lb = l.getBoundingClientRect();
      if (lb.width > 0 && lb.height > 0 && lb.left >= b.left - 1 && lb.right <= b.right + 1 &&
          lb.top >= b.top - 1 && lb.bottom <= b.bottom + 1) { inside++; }
    });
    r.charts.push({w: b.width, h: b.height, series: Number(svg.getAttribute("data-series")),
                   drawn: lines.length, inside: inside, ooms: svg.querySelectorAll("path.oom").length});
  });
  r.sections = document.querySelectorAll("section.deployment").length;
  r.nextDeaths = document.querySelectorAll('#next-deaths-table tbody tr').length;
  r.docLinks = document.querySelectorAll('.next-steps a[href^="https:"]').length;
  r.overflow = document.documentElement.scrollWidth > document.documentElement.clientWidth + 1;
  var badge = document.querySelector(".badge.leaking");
  r.badge = badge ? getComputedStyle(badge).backgroundColor : "";
  var out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify(r);
  document.body.appendChild(out);
})();
</script>"#;

fn chromium() -> PathBuf {
    common::debian_tool("EPITAPH_CHROMIUM", "/usr/bin/chromium", "chromium")
}

/// Renders `html` in headless Chromium with `probe` (a `<script>` that writes its findings as
/// JSON into `<pre id="probe">`) appended to the body, and returns what it found.
fn run_probe(html: &str, probe: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    std::fs::write(&page, html.replace("</body>", &format!("{probe}</body>"))).unwrap();
    let dom = dump_dom(&page, &dir.path().join("profile"));
    let found = dom
        .split_once("<pre id=\"probe\">")
        .and_then(|(_, rest)| rest.split_once("</pre>"))
        .map(|(json, _)| json.replace("&quot;", "\"").replace("&amp;", "&"))
        .unwrap_or_else(|| {
            panic!(
                "probe did not run; DOM ends: {}",
                &dom[dom.len().saturating_sub(500)..]
            )
        });
    let r: serde_json::Value = serde_json::from_str(&found).unwrap();
    eprintln!("probe: {r}");
    r
}

fn dump_dom(page: &Path, profile: &Path) -> String {
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--window-size=1000,1000",
        "--dump-dom",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(format!("file://{}", page.display()));
    let out = common::output_timeout(&mut cmd, common::CHILD_EXIT_BOUND);
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn report_renders_in_headless_chromium() {
    let fleet = Fleet::new(1, 6, 60);
    let out = common::output_timeout(
        Command::new(common::bin())
            .args(["scan", "--format", "html", "--config"])
            .arg(fleet.config_path()),
        common::CHILD_EXIT_BOUND,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = String::from_utf8(out.stdout).unwrap();
    // Self-contained: nothing fetched from anywhere.
    assert!(!html.contains("src=") && !html.contains("<link") && !html.contains("<script"));

    let r = run_probe(&html, PROBE);

    let memory_deployments = fleet
        .truth
        .deployments
        .values()
        .filter(|v| matches!(v.as_str(), "leaking" | "oom_without_leak"))
        .count();
    assert_eq!(
        r["sections"].as_u64(),
        Some(fleet.truth.deployments.len() as u64)
    );
    let charts = r["charts"].as_array().unwrap();
    assert_eq!(charts.len(), memory_deployments, "{r}");
    for c in charts {
        assert!(
            c["w"].as_f64().unwrap() >= 600.0 && c["h"].as_f64().unwrap() >= 150.0,
            "{c}"
        );
        assert!(c["series"].as_u64().unwrap() >= 2, "{c}");
        assert_eq!(c["drawn"], c["series"], "{c}");
        assert_eq!(
            c["inside"], c["series"],
            "every series laid out inside its chart: {c}"
        );
        assert!(c["ooms"].as_u64().unwrap() >= 2, "OOM deaths marked: {c}");
    }
    // Early warning lists every running instance of a leaking deployment; the next steps
    // link to the capture method's documentation.
    let leaking_running = fleet
        .truth
        .running
        .values()
        .filter(|t| t.dies_at.is_some())
        .count();
    assert!(leaking_running > 0);
    assert_eq!(
        r["nextDeaths"].as_u64(),
        Some(leaking_running as u64),
        "{r}"
    );
    assert!(r["docLinks"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(r["overflow"], false, "no horizontal scrolling at 1000 px");
    assert_eq!(r["badge"], "rgb(207, 34, 46)", "the stylesheet applied");
}

/// Markup planted in the last words (a `<script>` and an `<img onerror>`, quotes, `&`) stays
/// text in a real browser: nothing of it runs or becomes an element, and the excerpt shows it
/// as written (the unit tests in src/sinks/html/tests.rs cover every other field and the SVG).
#[test]
fn planted_markup_in_last_words_stays_text_in_headless_chromium() {
    const PLANTED: &str =
        "<img src=x onerror=document.title='pwned'><script>document.title='pwned'</script> & co";
    let fleet = Fleet::new(1, 6, 60);
    let mut planted = 0;
    for entry in std::fs::read_dir(fleet.dir.path().join("logs")).unwrap() {
        let p = entry.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        planted += text.matches("<--- JS stacktrace --->").count();
        std::fs::write(
            &p,
            text.replace(
                "<--- JS stacktrace --->",
                &format!("<--- JS stacktrace ---> {PLANTED}"),
            ),
        )
        .unwrap();
    }
    assert!(planted > 0, "the simulated fleet has V8 OOM last words");
    let out = common::output_timeout(
        Command::new(common::bin())
            .args(["scan", "--format", "html", "--config"])
            .arg(fleet.config_path()),
        common::CHILD_EXIT_BOUND,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = String::from_utf8(out.stdout).unwrap();
    assert!(
        !html.contains("<script") && !html.contains("<img"),
        "escaped"
    );
    assert!(
        html.contains("&#60;script&#62;document.title=&#39;pwned&#39;&#60;/script&#62; &#38; co")
    );

    let probe = r#"<script>
(function () {
  var planted = 0;
  document.querySelectorAll(".excerpt pre").forEach(function (p) {
    // `<\/script>`: the probe's own script element must not end inside its string.
    if (p.textContent.indexOf("<script>document.title='pwned'<\/script> & co") >= 0) { planted++; }
  });
  var out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({title: document.title, imgs: document.images.length,
    scripts: document.scripts.length, planted: planted});
  document.body.appendChild(out);
})();
</script>"#;
    let r = run_probe(&html, probe);
    assert_eq!(r["title"], "epitaph report", "no planted script ran: {r}");
    assert_eq!(r["imgs"], 0, "no planted element: {r}");
    assert_eq!(r["scripts"], 1, "only the probe: {r}");
    assert!(
        r["planted"].as_u64().unwrap() >= 1,
        "the excerpt shows the text as written: {r}"
    );
}
