//! Static group membership (KIP-345): the `group.instance.id` of each
//! module consumer, derived from the process's `instance-id`.
//!
//! A static member that stops without leaving its group (a crash, SIGKILL)
//! keeps its partitions until its session times out; a new consumer that
//! joins with the same `group.instance.id` within that time replaces it and
//! gets the same assignment back at once, without the wait and without a
//! rebalance of the other members. A dynamic member (no instance id) that
//! dies is only removed at its session timeout, so a restarted process
//! waits that long (librdkafka's default `session.timeout.ms` is 45 s).
//!
//! # One id per module consumer
//!
//! Every module has its own consumer, and every consumer needs its own
//! id: two live consumers with one id fence each other (the broker
//! answers the older one `FENCED_INSTANCE_ID`, which librdkafka treats as
//! fatal). The id is `<instance-id>-<module>`, the same on every start, so
//! that the restarted process takes its own place back.
//!
//! A reload never runs two consumers of one module at once: a reload in
//! place keeps the consumer, and a reload that needs a new consumer (other
//! topics, group, ...) stops the old one (drain, commit, leave) before it
//! starts the new one (`crate::runtime`). A graceful stop *leaves* the
//! group even as a static member: weir unsubscribes before closing, and
//! librdkafka sends `LeaveGroup` on unsubscribe (it only skips it when a
//! static member is destroyed), so the next consumer with the same id finds
//! the place free. Only a process that dies keeps its place, which is the
//! case static membership is for.
//!
//! # Session timeout
//!
//! A static member that really died (not restarted) is removed only after
//! `session.timeout.ms`; until then its partitions are not consumed. weir
//! keeps librdkafka's default (45 s) unless `[kafka] session.timeout.ms`
//! sets another: long enough for a process restart, short enough that a
//! lost pod's partitions move on within a minute. The broker bounds it
//! (`group.min.session.timeout.ms`, `group.max.session.timeout.ms`).

/// Longest `group.instance.id` the broker accepts (as for topic names).
pub const MAX_INSTANCE_ID: usize = 249;

/// Why an instance id cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstanceIdError {
    /// Empty.
    #[error("must not be empty")]
    Empty,
    /// Longer than [`MAX_INSTANCE_ID`] (with the module name, for a derived id).
    #[error("`{0}` is {1} characters long; Kafka accepts at most {MAX_INSTANCE_ID}")]
    TooLong(String, usize),
    /// A character Kafka does not accept.
    #[error("`{0}` may hold only ASCII letters, digits, `.`, `_` and `-`")]
    BadChar(String),
    /// `.` or `..`.
    #[error("`{0}` is not a valid id")]
    Dots(String),
}

/// Checks `id` against Kafka's rules for a `group.instance.id`.
pub fn check_instance_id(id: &str) -> Result<(), InstanceIdError> {
    if id.is_empty() {
        return Err(InstanceIdError::Empty);
    }
    if id == "." || id == ".." {
        return Err(InstanceIdError::Dots(id.to_owned()));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(InstanceIdError::BadChar(id.to_owned()));
    }
    if id.len() > MAX_INSTANCE_ID {
        return Err(InstanceIdError::TooLong(id.to_owned(), id.len()));
    }
    Ok(())
}

/// The `group.instance.id` of `module`'s consumer in the process named
/// `instance`: `<instance>-<module>`, checked as a whole (a module name
/// may be long).
pub fn group_instance_id(instance: &str, module: &str) -> Result<String, InstanceIdError> {
    let id = format!("{instance}-{module}");
    check_instance_id(&id)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_kafkas_rules() {
        assert_eq!(check_instance_id("weir-0"), Ok(()));
        assert_eq!(check_instance_id("pod_1.ns"), Ok(()));
        assert_eq!(check_instance_id(""), Err(InstanceIdError::Empty));
        assert!(matches!(
            check_instance_id(".."),
            Err(InstanceIdError::Dots(_))
        ));
        for bad in ["weir 0", "weir/0", "wéir", "a:b"] {
            assert!(
                matches!(check_instance_id(bad), Err(InstanceIdError::BadChar(_))),
                "{bad}"
            );
        }
        let long = "a".repeat(MAX_INSTANCE_ID + 1);
        assert!(matches!(
            check_instance_id(&long),
            Err(InstanceIdError::TooLong(_, 250))
        ));
    }

    #[test]
    fn each_module_gets_its_own_id() {
        assert_eq!(
            group_instance_id("weir-0", "enrich").as_deref(),
            Ok("weir-0-enrich")
        );
        assert_ne!(
            group_instance_id("weir-0", "enrich"),
            group_instance_id("weir-0", "audit")
        );
        let instance = "i".repeat(MAX_INSTANCE_ID - 3);
        assert!(group_instance_id(&instance, "ab").is_ok());
        assert!(group_instance_id(&instance, "abc").is_err());
    }
}
