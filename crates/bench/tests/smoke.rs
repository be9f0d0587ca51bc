//! A tiny run of the dev cluster suite against an in-process server: checks that every
//! phase issues and observes the expected number of requests, events and items, and that
//! the result has the documented shape. It never checks speed.

use bench::suites::devcluster::{self, Config, Mode, ServerOptions};

fn tiny() -> Config {
    Config {
        writes: 40,
        warmup: 5,
        concurrency: 4,
        watchers: 3,
        watch_writes: 25,
        list_objects: 30,
        list_runs: 3,
        page_size: 7,
        payload_bytes: 16,
        phase_timeout_s: 60,
        rounds: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_run_counts_everything() {
    let cfg = tiny();
    let report = devcluster::run(&cfg, &[Mode::InProcess], &ServerOptions::default())
        .await
        .unwrap();
    assert_eq!(report.schema, devcluster::SCHEMA);
    assert!(report.machine.nproc >= 1);
    assert_eq!(report.results.runs.len(), 1);
    let run = &report.results.runs[0];
    assert_eq!(run.mode, Mode::InProcess);
    assert_eq!(run.round, 1);
    assert_eq!(run.server_pid, None);

    let w = &run.writes;
    assert_eq!(w.result.requested, 40);
    assert_eq!(
        (w.result.ok, w.result.failed),
        (40, 0),
        "{:?}",
        w.result.first_error
    );
    assert_eq!(w.result.latency.count, 40);
    assert_eq!(w.result.concurrency, 4);
    assert!(w.server_process.is_none());
    // The accounting was reset before the measured creates.
    let creates = w
        .server
        .iter()
        .find(|v| v.key == "create configmaps")
        .unwrap();
    assert_eq!((creates.count, creates.errors), (40, 0));

    let watch = &run.watch;
    assert_eq!(watch.writes.ok, 25);
    assert_eq!(watch.expected_events, 75);
    assert_eq!(watch.delivered_events, 75);
    assert_eq!(watch.counts.added, 75);
    assert_eq!(watch.counts.other + watch.counts.error, 0);
    assert_eq!(watch.watchers_complete, 3);
    assert_eq!(watch.min_per_watcher, 25);
    assert_eq!(watch.streams_ended_early, 0);
    assert!(watch.events_per_second > 0.0);

    let list = &run.list;
    assert_eq!(list.fill.ok, 30);
    assert_eq!(list.items_per_list, 30);
    assert_eq!(list.unpaged.samples_ms.len(), 3);
    assert_eq!(list.paged.samples_ms.len(), 3);
    assert_eq!(list.client_decode.samples_ms.len(), 3);
    assert_eq!(list.client_typed_decode.samples_ms.len(), 3);
    // 30 items in pages of 7: 7, 7, 7, 7, 2.
    assert_eq!(list.pages, 5);
    let lists = list
        .server
        .iter()
        .find(|v| v.key == "list configmaps")
        .unwrap();
    assert_eq!(lists.count, 3 + 3 * 5);

    assert_eq!(report.targets.len(), 3);
    assert!(report.targets.iter().all(|t| t.mode == "in-process"));
    let v = serde_json::to_value(&report).unwrap();
    assert!(v["results"]["runs"][0]["writes"]["result"]["latency"]["p99_ms"].is_number());
    assert!(devcluster::render(&report).contains("in-process"));
}

#[tokio::test]
async fn a_bad_parameter_is_refused_before_starting() {
    let cfg = Config {
        list_runs: 0,
        ..tiny()
    };
    let e = devcluster::run(&cfg, &[Mode::InProcess], &ServerOptions::default())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("--list-runs"), "{e}");
}
