//! How CloudWatch Logs streams are found, against moto: `stream_lookup = "search"` finds an
//! instance's streams by *name* (lines that never mention the instance id are still its last
//! words), `"text"` only finds lines that mention the id, several log groups merge, an old
//! 8-digit id is not taken for a longer id it prefixes, and a missing group in `log_groups` is
//! an error naming its key.

use std::sync::Arc;

use chrono::{Duration, Utc};
use epitaph::config::{LogsConfig, SourceKind, StreamLookup};
use epitaph::sources::aws::{AwsContext, AwsLogs};
use epitaph::sources::{LastWordsQuery, LogSource};

use crate::aws_moto::{boto3, put_log_events_calls, start_moto, target, Moto, REGION};

const MAIN: &str = "/lookup/app";
const SYSTEM: &str = "/lookup/system";
/// A current-style id whose streams' lines never mention it.
const LEAKER: &str = "i-0aaaaaaaaaaaaaaa1";
/// An old 8-digit id that is a prefix of another instance's id.
const OLD: &str = "i-1234abcd";
const LONGER: &str = "i-1234abcdef0123456";

async fn put(moto: &Moto, group: &str, stream: &str, lines: &[(i64, &str)]) {
    let events: Vec<(i64, String)> = lines.iter().map(|(ms, m)| (*ms, m.to_string())).collect();
    boto3(
        &moto.url,
        REGION,
        put_log_events_calls(group, stream, &events),
    );
}

async fn source(moto: &Moto, lookup: &str, pattern: &str, groups: &[&str]) -> AwsLogs {
    let ctx = AwsContext {
        targets: Arc::new(vec![target(&moto.url)]),
    };
    let stream_lookup = match lookup {
        "name" => StreamLookup::Name,
        "search" => StreamLookup::Search,
        "text" => StreamLookup::Text,
        other => panic!("no stream_lookup {other}"),
    };
    let cfg = LogsConfig {
        kind: SourceKind::Aws,
        log_group: Some(groups[0].to_string()),
        log_groups: groups[1..].iter().map(|g| g.to_string()).collect(),
        stream_lookup,
        stream_pattern: pattern.into(),
        ..LogsConfig::default()
    };
    AwsLogs::new(ctx, &cfg).unwrap()
}

fn query(id: &str, terminated_at: chrono::DateTime<Utc>) -> LastWordsQuery {
    LastWordsQuery {
        instance_id: id.into(),
        origin: None,
        asg: "lookup-asg".into(),
        terminated_at,
        window: Duration::seconds(60),
        grace: Duration::seconds(30),
        max_bytes: 1 << 20,
        ..Default::default()
    }
}

async fn messages(src: &AwsLogs, id: &str, at: chrono::DateTime<Utc>) -> Vec<String> {
    let words = src.last_words(&query(id, at)).await.unwrap();
    words.events.into_iter().map(|e| e.message).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_found_by_name_across_log_groups() {
    let moto = start_moto();
    // moto drops events older than 14 days: recent times.
    let died = Utc::now() - Duration::minutes(10);
    let ms = |secs_before: i64| (died - Duration::seconds(secs_before)).timestamp_millis();
    put(
        &moto,
        MAIN,
        &format!("{LEAKER}/app.log"),
        &[
            (ms(40), "GET /orders 200 12ms"),
            (
                ms(5),
                "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory",
            ),
        ],
    )
    .await;
    put(
        &moto,
        SYSTEM,
        &format!("{LEAKER}/syslog"),
        &[(
            ms(3),
            "kernel: Out of memory: Killed process 4242 (node) total-vm:2048000kB",
        )],
    )
    .await;
    put(
        &moto,
        MAIN,
        &format!("{OLD}/app.log"),
        &[(ms(20), "old instance: shutting down")],
    )
    .await;
    put(
        &moto,
        MAIN,
        &format!("{LONGER}/app.log"),
        &[(ms(10), "OTHER INSTANCE LINE")],
    )
    .await;

    // search: every stream named after the instance, in both groups, merged in time order.
    let search = source(&moto, "search", "{instance_id}", &[MAIN, SYSTEM]).await;
    let got = messages(&search, LEAKER, died).await;
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got[1].contains("JavaScript heap out of memory"), "{got:?}");
    assert!(got[2].contains("Out of memory: Killed process"), "{got:?}");
    // The old id's streams only: not the longer id it is a prefix of.
    let got = messages(&search, OLD, died).await;
    assert_eq!(got, vec!["old instance: shutting down".to_string()]);

    // text: the lines never mention the id, so nothing is found — why `search` exists.
    let text = source(&moto, "text", "{instance_id}", &[MAIN]).await;
    assert!(messages(&text, LEAKER, died).await.is_empty());

    // name: the exact stream in each group; a group without it is no logs, not an error.
    let name = source(&moto, "name", "{instance_id}/app.log", &[MAIN, SYSTEM]).await;
    let got = messages(&name, LEAKER, died).await;
    assert_eq!(got.len(), 2, "{got:?}");

    // A missing group in the list is an error naming its key, in every lookup.
    for lookup in ["name", "search", "text"] {
        let src = source(
            &moto,
            lookup,
            "{instance_id}/app.log",
            &[MAIN, "/lookup/typo"],
        )
        .await;
        let err = src
            .last_words(&query(LEAKER, died))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sources.logs.log_groups[0]") && err.contains("/lookup/typo"),
            "{lookup}: {err}"
        );
    }
    let calls = search.calls();
    assert!(calls.contains_key("logs:DescribeLogStreams"), "{calls:?}");
    assert!(!calls.contains_key("logs:GetLogEvents"), "{calls:?}");
}
