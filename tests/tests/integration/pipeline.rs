//! Events flow through the example consumers with exact outputs.

use std::collections::BTreeMap;
use std::time::Duration;

use weir_tests::{
    Manifest, ModulesDir, Send, Topics, Weir, broker, consume, init_logging, produce, unique,
    wait_committed,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrich_transforms_events_keeping_keys_headers_and_order() {
    init_logging();
    let t = Topics::create("enrich").await;
    let modules = ModulesDir::new();
    modules.add(
        "enrich",
        "json-enrich",
        t.manifest().config("region", "eu-west"),
    );
    let weir = Weir::start(modules.path(), &[]);

    // 4 keys x 25 sequence numbers, interleaved, with a header each.
    let keys = ["alpha", "bravo", "charlie", "delta"];
    let records: Vec<Send> = (0..25)
        .flat_map(|seq| {
            keys.iter().map(move |k| {
                Send::kv(
                    k,
                    &format!(r#"{{"key":"{k}","seq":{seq},"price":2,"quantity":{seq}}}"#),
                )
                .header("trace", format!("{k}-{seq}"))
            })
        })
        .collect();
    produce(&t.input, &records).await;

    let out = consume(
        &t.output,
        100,
        Duration::from_secs(60),
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(
        out.len(),
        100,
        "exactly one output per input, no duplicates"
    );

    let mut seqs: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut partition_of: BTreeMap<String, i32> = BTreeMap::new();
    for r in &out {
        let key = r.key_text();
        let v = r.json();
        assert_eq!(v["key"], key.as_str(), "value matches its key");
        let seq = v["seq"].as_i64().unwrap();
        assert_eq!(v["region"], "eu-west");
        assert_eq!(v["total"], 2 * seq);
        assert_eq!(
            r.header("trace").as_deref(),
            Some(format!("{key}-{seq}").as_str())
        );
        assert_eq!(r.header("weir-enriched-by").as_deref(), Some("json-enrich"));
        let p = *partition_of.entry(key.clone()).or_insert(r.partition);
        assert_eq!(p, r.partition, "one key, one output partition");
        seqs.entry(key).or_default().push(seq);
    }
    // Output offsets per partition are in read order; within a key the
    // sequence must be exactly 0..25 in order.
    for (key, got) in &seqs {
        assert_eq!(got, &(0..25).collect::<Vec<_>>(), "order of key {key}");
    }
    weir.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_forwards_matching_events_and_dead_letters_poison_without_blocking() {
    init_logging();
    let t = Topics::create("filter").await;
    t.create_dlq().await;
    let modules = ModulesDir::new();
    modules.add(
        "filter",
        "filter",
        t.manifest()
            .dead_letters(&t.dlq)
            .config("field", "status")
            .config("equals", "paid"),
    );
    let weir = Weir::start(modules.path(), &[]);
    // All on partition 0: the poison event sits between good ones.
    let on_p0 = |k: &str, v: &str| Send::on(0, k, v);
    produce(
        &t.input,
        &[
            on_p0("a", r#"{"status":"paid","n":1}"#),
            on_p0("b", r#"{"status":"new","n":2}"#),
            on_p0("c", "this is not json"),
            on_p0("d", r#"{"status":"paid","n":4}"#),
            on_p0("e", r#"{"n":5}"#),
        ],
    )
    .await;
    let out = consume(
        &t.output,
        2,
        Duration::from_secs(60),
        Duration::from_secs(2),
    )
    .await;
    // Keys hash to different output partitions: compare as a sorted list.
    let mut got: Vec<(String, String)> = out.iter().map(|r| (r.key_text(), r.text())).collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("a".to_owned(), r#"{"status":"paid","n":1}"#.to_owned()),
            ("d".to_owned(), r#"{"status":"paid","n":4}"#.to_owned()),
        ]
    );
    // The poison event went to the dead-letter topic, intact and annotated.
    let dead = consume(&t.dlq, 1, Duration::from_secs(60), Duration::from_secs(1)).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let d = &dead[0];
    assert_eq!(d.key.as_deref(), Some(&b"c"[..]));
    assert_eq!(d.text(), "this is not json");
    assert_eq!(d.header("weir.error.kind").as_deref(), Some("rejected"));
    assert!(
        d.header("weir.error.message").unwrap().contains("JSON"),
        "{d:?}"
    );
    assert_eq!(
        d.header("weir.source.topic").as_deref(),
        Some(t.input.as_str())
    );
    assert_eq!(d.header("weir.source.partition").as_deref(), Some("0"));
    assert_eq!(d.header("weir.source.offset").as_deref(), Some("2"));
    assert_eq!(d.header("weir.module").as_deref(), Some("filter"));
    assert_eq!(d.header("weir.attempts").as_deref(), Some("1"));
    assert_eq!(d.header("weir.module.digest").map(|h| h.len()), Some(64));
    // Every event, the rejected one included, is settled and committed.
    let committed = wait_committed(
        &t.group,
        &t.input,
        Duration::from_secs(30),
        "offset 5",
        |c| c[0] == Some(5),
    )
    .await;
    assert_eq!(committed[0], Some(5));
    weir.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_batch_consumer_fans_out_by_content() {
    init_logging();
    let prefix = unique("route");
    let input = format!("{prefix}-in");
    let group = unique("g-router");
    let outs = ["eu", "us", "other", "audit"].map(|s| format!("{prefix}-{s}"));
    broker().create_topic(&input).await;
    for t in &outs {
        broker().create_topic(t).await;
    }
    let modules = ModulesDir::new();
    modules.add(
        "router",
        "router",
        Manifest::new(&input, &outs.each_ref().map(String::as_str), &group)
            .config("eu", "DE,FR")
            .config("audit-above", "100")
            .config("topic-prefix", prefix.as_str()),
    );
    let weir = Weir::start(modules.path(), &[]);
    let countries = ["DE", "US", "BR", "FR", "US", "JP"];
    let records: Vec<Send> = (0..60)
        .map(|i| {
            let c = countries[i % countries.len()];
            let price = if i % 10 == 0 { 500 } else { 10 };
            Send::kv(
                &format!("k{i}"),
                &format!(r#"{{"i":{i},"country":"{c}","price":{price}}}"#),
            )
        })
        .collect();
    produce(&input, &records).await;

    let expect =
        |pred: &dyn Fn(usize) -> bool| (0..60).filter(|&i| pred(i)).collect::<Vec<usize>>();
    let cases = [
        (
            &outs[0],
            expect(&|i| matches!(countries[i % 6], "DE" | "FR")),
        ),
        (&outs[1], expect(&|i| countries[i % 6] == "US")),
        (
            &outs[2],
            expect(&|i| matches!(countries[i % 6], "BR" | "JP")),
        ),
        (&outs[3], expect(&|i| i % 10 == 0)),
    ];
    for (topic, want) in cases {
        let out = consume(
            topic,
            want.len(),
            Duration::from_secs(60),
            Duration::from_millis(500),
        )
        .await;
        let mut got: Vec<usize> = out
            .iter()
            .map(|r| r.json()["i"].as_u64().unwrap() as usize)
            .collect();
        got.sort_unstable();
        assert_eq!(got, want, "contents of {topic}");
        for r in &out {
            let i = r.json()["i"].as_u64().unwrap();
            assert_eq!(
                r.key.as_deref(),
                Some(format!("k{i}").as_bytes()),
                "key kept"
            );
        }
    }
    weir.stop().await.expect("clean shutdown");
}
