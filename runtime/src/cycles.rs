//! Loops through topics: a module that consumes what it writes, and modules
//! of one folder that feed each other in a ring.
//!
//! A module *writes* its `output-topics`, its dead-letter topic (when
//! `on-failure.action` is `dead-letter`) and its state changelog topic (when
//! it has a `[state]` table). A module whose writes include one of its
//! `input-topics` is refused at load ([`self_loop`]): one event could come
//! back to it forever. Modules that feed each other (A's writes are B's
//! inputs and B's are A's, through any number of modules) only get a warning
//! ([`chain_cycles`]): each module on its own is fine, and the folder may be
//! about to change. A manifest with `allow-cycles = true` opts out of both:
//! the module is loaded, and a ring through it is not reported.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use crate::manifest::{FailureAction, Manifest};

/// Why a module writes to a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// The topic is in `output-topics`.
    Output,
    /// Its dead-letter topic (`on-failure.action = "dead-letter"`).
    DeadLetter,
    /// Its state changelog (a `[state]` table).
    Changelog,
}

impl Writer {
    /// How an input topic that is also written this way is described.
    fn problem(self, topic: &str) -> String {
        match self {
            Self::Output => format!("input topic `{topic}` is also in `output-topics`"),
            Self::DeadLetter => format!(
                "input topic `{topic}` is also the module's dead-letter topic \
                 (`on-failure.dead-letter-topic`; an event that fails for good would come back)"
            ),
            Self::Changelog => format!(
                "input topic `{topic}` is also the module's state changelog \
                 (`state.changelog-topic`)"
            ),
        }
    }
}

/// Every topic module `name` writes, and why.
fn writes(name: &str, manifest: &Manifest) -> Vec<(String, Writer)> {
    let mut writes: Vec<(String, Writer)> = manifest
        .output_topics
        .iter()
        .map(|t| (t.clone(), Writer::Output))
        .collect();
    if manifest.on_failure.action == FailureAction::DeadLetter {
        writes.push((
            manifest.on_failure.dead_letter_topic(name),
            Writer::DeadLetter,
        ));
    }
    if let Some(state) = &manifest.state {
        writes.push((state.changelog_topic(name), Writer::Changelog));
    }
    writes
}

/// Why module `name` (with `manifest`) would consume what it writes, or
/// `None` when it does not, or when its manifest sets `allow-cycles`. The
/// text names each topic and the key that writes it, and says how to opt
/// in, e.g. "input topic `t` is also in `output-topics`: the module would
/// consume what it writes, so one event could loop forever; …".
pub fn self_loop(name: &str, manifest: &Manifest) -> Option<String> {
    if manifest.allow_cycles {
        return None;
    }
    let inputs: BTreeSet<&str> = manifest.input_topics.iter().map(String::as_str).collect();
    let problems: Vec<String> = writes(name, manifest)
        .into_iter()
        .filter(|(topic, _)| inputs.contains(topic.as_str()))
        .map(|(topic, writer)| writer.problem(&topic))
        .collect();
    (!problems.is_empty()).then(|| {
        format!(
            "{}: the module would consume what it writes, so one event could loop forever; \
             remove the topic from one side, or set `allow-cycles = true` in the manifest if \
             the module ends the loop itself",
            problems.join("; ")
        )
    })
}

/// A ring of modules feeding each other through topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    /// The modules in order; the last feeds the first.
    pub modules: Vec<String>,
    /// `topics[i]` carries events from `modules[i]` to the next module.
    pub topics: Vec<String>,
}

impl fmt::Display for Cycle {
    /// E.g. a → b → a via topics `x`, `y`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for module in &self.modules {
            write!(f, "{module} → ")?;
        }
        let first = self.modules.first().map_or("", String::as_str);
        let topics: Vec<String> = self.topics.iter().map(|t| format!("`{t}`")).collect();
        write!(f, "{first} via topics {}", topics.join(", "))
    }
}

/// The rings among `modules` (name and manifest): one [`Cycle`] per group
/// of modules that all reach each other, the shortest through the group's
/// first module by name. Modules whose manifest sets `allow-cycles` are left
/// out, so a ring through one of them is not reported. Sorted, so the same
/// modules give the same answer.
pub fn chain_cycles<'a>(modules: impl IntoIterator<Item = (&'a str, &'a Manifest)>) -> Vec<Cycle> {
    let nodes: BTreeMap<&str, &Manifest> = modules
        .into_iter()
        .filter(|(_, m)| !m.allow_cycles)
        .collect();
    // successors[a][b]: the first topic (by name) a writes and b reads.
    let mut successors: BTreeMap<&str, BTreeMap<&str, String>> = BTreeMap::new();
    for (&from, &manifest) in &nodes {
        let written: BTreeSet<String> = writes(from, manifest).into_iter().map(|w| w.0).collect();
        let edges = successors.entry(from).or_default();
        for (&to, &reader) in &nodes {
            if let Some(topic) = reader
                .input_topics
                .iter()
                .filter(|t| written.contains(*t))
                .min()
            {
                edges.insert(to, topic.clone());
            }
        }
    }
    let mut covered = BTreeSet::new();
    let mut cycles = Vec::new();
    for &start in nodes.keys() {
        if covered.contains(start) {
            continue;
        }
        let Some(cycle) = shortest_cycle(&successors, start) else {
            continue;
        };
        // Every module that reaches `start` and is reached from it is in
        // this ring's group: report the group once.
        let from = reachable(start, |n| successors[n].keys().copied().collect());
        let to = reachable(start, |n| {
            successors
                .iter()
                .filter(|(_, next)| next.contains_key(n))
                .map(|(&m, _)| m)
                .collect()
        });
        covered.extend(from.intersection(&to).copied());
        cycles.push(cycle);
    }
    cycles
}

/// The chain check of a running folder: the rings last reported, so that
/// each is logged once, when it appears, not on every rescan.
#[derive(Debug, Default)]
pub struct ChainWatch {
    reported: Vec<Cycle>,
}

impl ChainWatch {
    /// Recomputes the rings among `modules` (the running modules' names and
    /// manifests): logs a warning for each ring that is new, and a line for
    /// each that is gone. Returns the warning of every module on a ring, by
    /// module name, for the status.
    pub fn update<'a>(
        &mut self,
        modules: impl IntoIterator<Item = (&'a str, &'a Manifest)>,
    ) -> BTreeMap<String, Vec<String>> {
        let cycles = chain_cycles(modules);
        for cycle in cycles.iter().filter(|c| !self.reported.contains(c)) {
            tracing::warn!(
                cycle = %cycle,
                "modules feed each other through topics: one event can go round forever; set \
                 `allow-cycles = true` in the manifest of a module on the ring if it ends the loop"
            );
        }
        for cycle in self.reported.iter().filter(|c| !cycles.contains(c)) {
            tracing::info!(cycle = %cycle, "modules no longer feed each other in a ring");
        }
        let mut warnings: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for cycle in &cycles {
            let text = format!(
                "modules feed each other through topics: {cycle}; one event can go round \
                 forever (set `allow-cycles = true` on a module of the ring if it ends the loop)"
            );
            for module in &cycle.modules {
                warnings
                    .entry(module.clone())
                    .or_default()
                    .push(text.clone());
            }
        }
        self.reported = cycles;
        warnings
    }
}

/// The shortest path from `start` back to itself, by breadth-first search.
fn shortest_cycle(
    successors: &BTreeMap<&str, BTreeMap<&str, String>>,
    start: &str,
) -> Option<Cycle> {
    let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for &next in successors[node].keys() {
            if next == start {
                let mut modules = vec![node];
                while let Some(&p) = parent.get(modules[modules.len() - 1]) {
                    modules.push(p);
                }
                modules.reverse();
                let topics = modules
                    .iter()
                    .zip(modules.iter().skip(1).chain([&start]))
                    .map(|(a, b)| successors[a][b].clone())
                    .collect();
                return Some(Cycle {
                    modules: modules.into_iter().map(str::to_owned).collect(),
                    topics,
                });
            }
            if next != start && !parent.contains_key(next) {
                parent.insert(next, node);
                queue.push_back(next);
            }
        }
    }
    None
}

/// `start` and every node reached from it through `next`.
fn reachable<'a>(start: &'a str, next: impl Fn(&'a str) -> Vec<&'a str>) -> BTreeSet<&'a str> {
    let mut seen = BTreeSet::from([start]);
    let mut stack = vec![start];
    while let Some(node) = stack.pop() {
        for n in next(node) {
            if seen.insert(n) {
                stack.push(n);
            }
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn manifest(text: &str) -> Manifest {
        Manifest::parse(text, Path::new("m.toml")).unwrap()
    }

    fn pipe(input: &str, output: &str) -> Manifest {
        manifest(&format!(
            "input-topics = [\"{input}\"]\noutput-topics = [\"{output}\"]\n"
        ))
    }

    fn cycles(modules: &[(&str, &Manifest)]) -> Vec<String> {
        chain_cycles(modules.iter().copied())
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_module_reading_its_own_output_is_a_self_loop_naming_the_topic() {
        let m = manifest("input-topics = [\"a\", \"t\"]\noutput-topics = [\"t\", \"out\"]\n");
        assert_eq!(
            self_loop("m", &m).unwrap(),
            "input topic `t` is also in `output-topics`: the module would consume what it \
             writes, so one event could loop forever; remove the topic from one side, or set \
             `allow-cycles = true` in the manifest if the module ends the loop itself"
        );
        assert_eq!(self_loop("m", &pipe("a", "b")), None);
    }

    #[test]
    fn allow_cycles_opts_a_module_in() {
        let m = manifest("input-topics = [\"t\"]\noutput-topics = [\"t\"]\nallow-cycles = true\n");
        assert!(m.allow_cycles);
        assert_eq!(self_loop("m", &m), None);
        assert!(!pipe("t", "t").allow_cycles, "off by default");
    }

    #[test]
    fn a_dead_letter_topic_among_the_inputs_is_a_self_loop_unless_nothing_is_dead_lettered() {
        let m = manifest(
            "input-topics = [\"in\", \"dlq\"]\n[on-failure]\ndead-letter-topic = \"dlq\"\n",
        );
        let why = self_loop("m", &m).unwrap();
        assert!(
            why.starts_with(
                "input topic `dlq` is also the module's dead-letter topic \
                 (`on-failure.dead-letter-topic`"
            ),
            "{why}"
        );
        // The default dead-letter topic is the module's name's.
        let m = manifest("input-topics = [\"weir-dlq-m\"]");
        assert!(self_loop("m", &m).unwrap().contains("`weir-dlq-m`"));
        assert_eq!(self_loop("other", &m), None);
        // Skipped or stopped events are not written anywhere.
        for action in ["skip", "stop"] {
            let m = manifest(&format!(
                "input-topics = [\"dlq\"]\n[on-failure]\naction = \"{action}\"\n\
                 dead-letter-topic = \"dlq\"\n"
            ));
            assert_eq!(self_loop("m", &m), None, "{action}");
        }
    }

    #[test]
    fn a_state_changelog_among_the_inputs_is_a_self_loop() {
        let m = manifest("input-topics = [\"weir-state-m\"]\n[state]\n");
        let why = self_loop("m", &m).unwrap();
        assert!(why.contains("`state.changelog-topic`"), "{why}");
    }

    #[test]
    fn every_looping_topic_is_named() {
        let m = manifest(
            "input-topics = [\"t\", \"u\", \"d\"]\noutput-topics = [\"u\", \"t\"]\n\
             [on-failure]\ndead-letter-topic = \"d\"\n",
        );
        let why = self_loop("m", &m).unwrap();
        for topic in ["`t`", "`u`", "`d`"] {
            assert!(why.contains(topic), "{topic}: {why}");
        }
    }

    #[test]
    fn modules_feeding_each_other_form_a_two_cycle() {
        let (a, b, c) = (pipe("x", "y"), pipe("y", "x"), pipe("y", "z"));
        assert_eq!(
            cycles(&[("b", &b), ("c", &c), ("a", &a)]),
            ["a → b → a via topics `y`, `x`"]
        );
        assert!(cycles(&[("a", &a), ("c", &c)]).is_empty());
    }

    #[test]
    fn a_three_cycle_is_found_once_from_its_first_module() {
        let (a, b, c) = (pipe("x", "y"), pipe("y", "z"), pipe("z", "x"));
        let found = chain_cycles([("c", &c), ("a", &a), ("b", &b)]);
        assert_eq!(
            found,
            [Cycle {
                modules: vec!["a".into(), "b".into(), "c".into()],
                topics: vec!["y".into(), "z".into(), "x".into()],
            }]
        );
        assert_eq!(
            found[0].to_string(),
            "a → b → c → a via topics `y`, `z`, `x`"
        );
    }

    #[test]
    fn the_shortest_ring_is_reported_and_separate_rings_each_once() {
        // a → b → c → a and a → c → a share a group: one report, the shorter.
        let a = manifest("input-topics = [\"x\"]\noutput-topics = [\"y\", \"z\"]\n");
        let (b, c) = (pipe("y", "z"), pipe("z", "x"));
        // d ⇄ e apart.
        let (d, e) = (pipe("p", "q"), pipe("q", "p"));
        assert_eq!(
            cycles(&[("a", &a), ("b", &b), ("c", &c), ("d", &d), ("e", &e)]),
            [
                "a → c → a via topics `z`, `x`",
                "d → e → d via topics `q`, `p`"
            ]
        );
    }

    #[test]
    fn an_opted_in_module_on_the_ring_silences_it() {
        let a = pipe("x", "y");
        let b = manifest("input-topics = [\"y\"]\noutput-topics = [\"x\"]\nallow-cycles = true\n");
        assert!(cycles(&[("a", &a), ("b", &b)]).is_empty());
        // A ring beside it is still reported.
        let (c, d) = (pipe("p", "q"), pipe("q", "p"));
        assert_eq!(
            cycles(&[("a", &a), ("b", &b), ("c", &c), ("d", &d)]),
            ["c → d → c via topics `q`, `p`"]
        );
    }

    #[test]
    fn dead_letters_and_changelogs_close_rings_too() {
        // a's dead letters go to b, which feeds a again.
        let a = manifest("input-topics = [\"x\"]\n[on-failure]\ndead-letter-topic = \"dlq\"\n");
        let b = pipe("dlq", "x");
        assert_eq!(
            cycles(&[("a", &a), ("b", &b)]),
            ["a → b → a via topics `dlq`, `x`"]
        );
        // A module reading another's changelog, feeding it.
        let a = manifest("input-topics = [\"x\"]\n[on-failure]\naction = \"skip\"\n[state]\n");
        let b = pipe("weir-state-a", "x");
        assert_eq!(
            cycles(&[("a", &a), ("b", &b)]),
            ["a → b → a via topics `weir-state-a`, `x`"]
        );
    }

    #[test]
    fn the_chain_watch_reports_each_ring_to_every_module_on_it() {
        let (a, b, c) = (pipe("x", "y"), pipe("y", "x"), pipe("y", "z"));
        let mut watch = ChainWatch::default();
        let warnings = watch.update([("a", &a), ("b", &b), ("c", &c)]);
        assert_eq!(warnings.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(warnings["a"], warnings["b"]);
        assert!(
            warnings["a"][0].contains("a → b → a via topics `y`, `x`"),
            "{warnings:?}"
        );
        assert!(warnings["a"][0].contains("allow-cycles = true"));
        assert_eq!(watch.update([("a", &a), ("b", &b)]), warnings);
        assert!(
            watch.update([("a", &a), ("c", &c)]).is_empty(),
            "b unloaded"
        );
    }

    #[test]
    fn a_self_loop_given_to_the_chain_check_is_a_one_module_ring() {
        let m = pipe("t", "t");
        assert_eq!(cycles(&[("m", &m)]), ["m → m via topics `t`"]);
    }
}
