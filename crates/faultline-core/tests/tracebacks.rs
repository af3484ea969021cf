//! Tracebacks as eight runtimes and their usual loggers print them, read the way a log file is:
//! each corpus in `tests/tracebacks/` is one stream, assembled line by line and grouped by one
//! [`Grouper`], as `faultline` does for a tailed file.
//!
//! A corpus is a list of cases, each opened by a line `=== <label>` (optionally
//! `=== <label> | <headline>`). Every case must come out as exactly one error event (a
//! traceback never becomes entries of its own, nor swallows the next case; a line stating a
//! lower level, such as a request's INFO line, may stand beside it); cases with the same
//! label must share a fingerprint and cases with different labels must not. The labels were
//! written by hand, from what the error is: the same bug across deploys (other ids, line numbers,
//! install paths) is one label, the same error reached from another call site or another
//! exception type from one function is another.

use std::collections::BTreeMap;

use faultline_core::{Assembler, AssemblerOptions, Grouper, Level, LogEvent, ParseContext, headline};

struct Case {
    label: String,
    headline: Option<String>,
    /// Byte range of the case's text in the assembled stream.
    start: u64,
    end: u64,
}

/// Splits a corpus into its cases and the stream the assembler reads (the corpus without its
/// `===` lines).
fn read_corpus(text: &str) -> (Vec<Case>, String) {
    let mut cases: Vec<Case> = Vec::new();
    let mut stream = String::new();
    for line in text.split_inclusive('\n') {
        if let Some(head) = line.strip_prefix("=== ") {
            if let Some(last) = cases.last_mut() {
                last.end = stream.len() as u64;
            }
            let (label, headline) = match head.trim_end().split_once(" | ") {
                Some((l, h)) => (l.trim().to_owned(), Some(h.trim().to_owned())),
                None => (head.trim().to_owned(), None),
            };
            cases.push(Case { label, headline, start: stream.len() as u64, end: u64::MAX });
        } else if !cases.is_empty() {
            stream.push_str(line);
        }
    }
    (cases, stream)
}

fn assemble(stream: &str, whole_from: Level) -> Vec<LogEvent> {
    let options = AssemblerOptions {
        parse: ParseContext { default_year: 2024 },
        whole_from,
        ..AssemblerOptions::default()
    };
    let mut asm = Assembler::new("corpus", options);
    let mut events = Vec::new();
    let mut offset = 0u64;
    for line in stream.split_inclusive('\n') {
        events.extend(asm.push(line, offset, 0));
        offset += line.len() as u64;
    }
    events.extend(asm.finish(0));
    events
}

#[track_caller]
fn check(name: &str, text: &str) {
    let (cases, stream) = read_corpus(text);
    let events = assemble(&stream, Level::Unknown);
    let mut problems = Vec::new();

    // Each case is exactly one error event.
    let mut per_case: Vec<Vec<&LogEvent>> = cases.iter().map(|_| Vec::new()).collect();
    for event in &events {
        let offset: u64 = event.origin.external_id.as_deref().and_then(|o| o.parse().ok()).expect("offset");
        match cases.iter().position(|c| (c.start..c.end).contains(&offset)) {
            Some(i) => per_case[i].push(event),
            None => problems.push(format!("event outside any case: {:?}", event.message)),
        }
    }
    let mut grouper = Grouper::default();
    let mut fingerprints: Vec<Option<String>> = Vec::new();
    for (case, got) in cases.iter().zip(&per_case) {
        // Lines of the case that state a lower level of their own (a request's INFO line)
        // are events of their own; anything else is a piece of the error.
        let (errors, others): (Vec<&LogEvent>, Vec<&LogEvent>) =
            got.iter().partition(|e| e.level >= Level::Error);
        let pieces: Vec<&str> =
            others.iter().filter(|e| e.level == Level::Unknown).map(|e| e.message.as_str()).collect();
        if !pieces.is_empty() {
            problems.push(format!("{}: pieces left over as entries of their own: {pieces:?}", case.label));
        }
        let [event] = errors.as_slice() else {
            let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
            problems.push(format!("{}: {} error events, not one: {messages:?}", case.label, errors.len()));
            fingerprints.push(None);
            continue;
        };
        if let Some(want) = &case.headline {
            let got = headline(&event.message, event.traceback.as_deref());
            if &got != want {
                problems.push(format!("{}: headline {got:?}, want {want:?}", case.label));
            }
        }
        fingerprints.push(Some(grouper.group(event).fingerprint.to_string()));
    }

    // Same label ⇔ same fingerprint.
    let mut by_label: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, case) in cases.iter().enumerate() {
        by_label.entry(&case.label).or_default().push(i);
    }
    for (label, indexes) in &by_label {
        let fps: Vec<&Option<String>> = indexes.iter().map(|&i| &fingerprints[i]).collect();
        if fps.iter().any(|f| f.is_some() && *f != fps[0]) {
            problems.push(format!("{label}: its {} cases split into several groups", indexes.len()));
        }
    }
    let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
    for (case, fp) in cases.iter().zip(&fingerprints) {
        let Some(fp) = fp else { continue };
        match owner.get(fp.as_str()) {
            Some(other) if *other != case.label => {
                problems.push(format!("{} and {other} share a group", case.label));
            }
            _ => {
                owner.insert(fp, &case.label);
            }
        }
    }
    problems.dedup();
    assert!(
        problems.is_empty(),
        "{name}: {} cases, {} problems:\n{}",
        cases.len(),
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn python() {
    check("python", include_str!("tracebacks/python.log"));
}

#[test]
fn java_and_kotlin() {
    check("java", include_str!("tracebacks/java.log"));
}

#[test]
fn go() {
    check("go", include_str!("tracebacks/go.log"));
}

#[test]
fn node() {
    check("node", include_str!("tracebacks/node.log"));
}

#[test]
fn rust() {
    check("rust", include_str!("tracebacks/rust.log"));
}

#[test]
fn ruby() {
    check("ruby", include_str!("tracebacks/ruby.log"));
}

#[test]
fn dotnet() {
    check("dotnet", include_str!("tracebacks/dotnet.log"));
}

#[test]
fn php() {
    check("php", include_str!("tracebacks/php.log"));
}

/// A reader that only counts what is below its level (`faultline ingest`) gets summaries of
/// those events: every corpus splits into the same events at the same levels and times, and
/// the events at or above the level come out whole.
#[test]
fn summaries_below_a_level_keep_every_boundary() {
    let corpora = [
        include_str!("tracebacks/python.log"),
        include_str!("tracebacks/java.log"),
        include_str!("tracebacks/go.log"),
        include_str!("tracebacks/node.log"),
        include_str!("tracebacks/rust.log"),
        include_str!("tracebacks/ruby.log"),
        include_str!("tracebacks/dotnet.log"),
        include_str!("tracebacks/php.log"),
    ];
    let mut summarised = 0;
    for corpus in corpora {
        let (_, stream) = read_corpus(corpus);
        // INFO lines with lines under them, as a request log with a body prints; an INFO line
        // and an error naming their requests.
        let stream = format!(
            "2024-01-02 03:04:05,000 INFO app: request body follows\n  {{\"id\": 1}}\n\
             2024-01-02 03:04:05,100 INFO app: GET /health 200\n\
             2024-01-02 03:04:05,200 ERROR app: POST /orders/7 failed\n{stream}\
             2024-01-02 03:04:06,000 DEBUG app: done\n    at the end\n"
        );
        let whole = assemble(&stream, Level::Unknown);
        let summaries = assemble(&stream, Level::Error);
        let boundaries = |events: &[LogEvent]| -> Vec<(Option<String>, Level, i64)> {
            events.iter().map(|e| (e.origin.external_id.clone(), e.level, e.timestamp_ms)).collect()
        };
        assert_eq!(boundaries(&summaries), boundaries(&whole));
        let requests = |events: &[LogEvent]| -> Vec<Option<String>> {
            events.iter().take(3).map(|e| e.request_path.clone()).collect()
        };
        assert_eq!(requests(&whole), [None, Some("/health".to_owned()), Some("/orders/7".to_owned())]);
        assert_eq!(requests(&summaries), [None, None, Some("/orders/7".to_owned())]);
        for (s, w) in summaries.iter().zip(&whole) {
            if w.level >= Level::Error {
                assert_eq!(s, w);
            } else if s.raw.is_empty() {
                assert!(s.message.is_empty() && s.traceback.is_none() && s.metadata.is_empty(), "{s:?}");
                summarised += 1;
            } else {
                // A line without a level of its own is never summarised.
                assert_eq!(s, w);
            }
        }
    }
    assert!(summarised >= 16, "only {summarised} events summarised");
}
