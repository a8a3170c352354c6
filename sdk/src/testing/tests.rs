use super::*;
use crate::{Context, EventBuilder, Record, config, info};

struct Echo;

impl Consumer for Echo {
    fn on_event(ctx: &mut Context, event: &Event) -> Result<(), Error> {
        match event.value_str()? {
            Some("retry") => Err(Error::retry("not now")),
            Some("reject") => Err(Error::reject("never")),
            Some("panic") => panic!("consumer bug"),
            _ => {
                info!("echo {}", event.offset());
                let topic = config::get_or("to", "echo");
                ctx.emit(event.forward_to(topic))?;
                Ok(())
            }
        }
    }
}

fn event(offset: i64, value: &str) -> EventBuilder {
    Event::builder().offset(offset).value(value)
}

#[test]
fn run_collects_emits_logs_and_the_result() {
    let outcome = Harness::new()
        .config("to", "out")
        .run::<Echo>(event(5, "hi"));
    assert_eq!(outcome.disposition(), Disposition::Ok);
    assert_eq!(outcome.reason(), None);
    assert_eq!(outcome.produced().len(), 1);
    assert_eq!(outcome.emitted[0].topic(), "out");
    assert_eq!(
        outcome.logs,
        [LogLine {
            level: Level::Info,
            message: "echo 5".into()
        }]
    );
}

#[test]
fn failures_produce_nothing() {
    let outcome = Harness::new().run::<Echo>(event(0, "retry"));
    assert_eq!(outcome.disposition(), Disposition::Retry("not now".into()));
    assert!(outcome.produced().is_empty());
    let outcome = Harness::new().run::<Echo>(event(0, "reject"));
    assert_eq!(outcome.reason(), Some("never"));
}

#[test]
fn emits_are_refused_like_the_host_would() {
    let harness = Harness::new()
        .config("to", "elsewhere")
        .output_topics(["echo"]);
    let outcome = harness.run::<Echo>(event(0, "x"));
    assert_eq!(
        outcome.reason(),
        Some("topic `elsewhere` is not in the module's output-topics")
    );
    assert!(outcome.emitted.is_empty());

    let refused = Harness::new().max_emits(1).with(|| {
        let mut ctx = Context::new();
        ctx.emit(Record::to("a")).unwrap();
        let second = ctx.emit(Record::to("a"));
        let negative = ctx.emit(Record::to("a").partition(-2));
        assert_eq!(ctx.emitted(), 1);
        (second, negative)
    });
    assert_eq!(
        refused,
        (
            Err(EmitError::TooMany(1)),
            Err(EmitError::InvalidPartition(-2))
        )
    );
}

#[test]
fn default_batch_stops_at_the_first_retry() {
    let outcome = Harness::new().run_batch::<Echo>([
        event(10, "a"),
        event(11, "reject"),
        event(12, "retry"),
        event(13, "b"),
    ]);
    assert_eq!(
        outcome.dispositions(),
        [
            Disposition::Ok,
            Disposition::Reject("never".into()),
            Disposition::Retry("not now".into()),
            Disposition::Retry("batch will be retried: offset 12 asked for a retry".into()),
        ]
    );
    assert_eq!(outcome.emitted.len(), 1, "offset 13 must not be handled");
    assert!(outcome.produced().is_empty());
}

#[test]
fn batch_without_retry_produces_everything_emitted() {
    let outcome =
        Harness::new().run_batch::<Echo>([event(1, "a"), event(2, "reject"), event(3, "b")]);
    assert_eq!(outcome.results.len(), 3);
    assert_eq!(outcome.produced().len(), 2);
}

#[test]
fn a_panicking_consumer_leaves_the_thread_clean() {
    let harness = Harness::new().config("to", "x");
    let caught = std::panic::catch_unwind(|| harness.run::<Echo>(event(0, "panic")));
    assert!(caught.is_err());
    assert_eq!(config::get("to"), None, "session must be cleared");
    assert!(Harness::new().run::<Echo>(event(1, "ok")).is_ok());
}

#[test]
fn exports_map_results_to_wit_dispositions() {
    use crate::bindings::batch::exports::weir::consumer::batch_handler::Guest as _;
    use crate::bindings::consumer::exports::weir::consumer::handler::Guest as _;
    use crate::bindings::consumer::weir::consumer::types::Disposition as Wit;
    use crate::export::{BatchHandlerExport, HandlerExport};

    let results = Harness::new().with(|| {
        let one = HandlerExport::<Echo>::handle(event(0, "reject").build().0);
        let batch = BatchHandlerExport::<Echo>::handle_batch(vec![
            event(0, "a").build().0,
            event(1, "retry").build().0,
        ]);
        (one, batch)
    });
    assert_eq!(results.0, Wit::Reject("never".into()));
    assert_eq!(results.1.len(), 2);
    assert_eq!(results.1[0], Wit::Ok);
}
