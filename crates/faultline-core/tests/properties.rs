//! Properties of masking, fingerprinting and template mining over arbitrary input: nothing
//! panics, masking is idempotent, the same line always gives the same fingerprint, and a miner
//! restored from its clusters gives the same ids to the same stream.

use faultline_core::mine::Miner;
use faultline_core::{Level, LogEvent, Origin, fingerprint, mask};
use proptest::prelude::*;

fn event(message: &str, traceback: Option<&str>) -> LogEvent {
    LogEvent {
        timestamp_ms: 0,
        level: Level::Error,
        source: "app".into(),
        message: message.to_owned(),
        traceback: traceback.map(str::to_owned),
        request_path: None,
        request_method: None,
        metadata: Default::default(),
        raw: message.to_owned(),
        origin: Origin { source_id: "test".into(), external_id: None },
    }
}

/// Log-like text: words, numbers, hex, IPs, quotes, key=value, punctuation, and some noise.
fn log_line() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        "[a-z]{1,8}",
        "[0-9]{1,6}",
        "0x[0-9a-f]{4,12}",
        "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}(:[0-9]{2,5})?",
        "\"[a-z ]{0,6}\"",
        "[a-z]{1,5}=[a-z0-9]{0,6}",
        "[-:/#_.,()\\[\\]<>=]{1,3}",
        "\\PC{1,4}",
    ];
    prop::collection::vec(token, 0..12).prop_map(|t| t.join(" "))
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = mask(&text);
        let _ = fingerprint(&event(&text, Some(&text)));
        Miner::default().add(&mask(&text));
        let _ = faultline_core::scrub::scrub_text(&text);
    }

    #[test]
    fn scrubbing_is_idempotent_and_never_panics(
        words in prop::collection::vec("(password=|Bearer |token: |4111 1111 1111 1111|\\PC{0,6}|[a-z0-9_.-]{1,12}| )", 0..12),
    ) {
        let text = words.concat();
        if let Some((once, _)) = faultline_core::scrub::scrub_text(&text) {
            prop_assert!(faultline_core::scrub::scrub_text(&once).is_none(), "scrubbing {:?} gave {:?}", text, once);
        }
    }

    #[test]
    fn masking_is_idempotent(line in log_line()) {
        let once = mask(&line);
        prop_assert_eq!(mask(&once), once.clone(), "masking {:?}", line);
    }

    #[test]
    fn lines_differing_only_in_their_values_share_a_fingerprint(
        words in prop::collection::vec("[a-z]{2,8}", 1..6),
        kinds in prop::collection::vec(0usize..4, 1..4),
        a in any::<u32>(),
        b in any::<u32>(),
    ) {
        let line = |seed: u32| {
            let values = kinds.iter().enumerate().map(|(i, kind)| {
                let v = seed.rotate_left(i as u32 * 7);
                match kind {
                    0 => (v % 100_000).to_string(),
                    1 => std::net::Ipv4Addr::from(v).to_string(),
                    2 => format!("0x{v:08x}"),
                    _ => format!("\"{}\"", v % 1000),
                }
            });
            words.iter().cloned().chain(values).collect::<Vec<_>>().join(" ")
        };
        let (first, second) = (line(a), line(b));
        let fa = fingerprint(&event(&first, None));
        let fb = fingerprint(&event(&second, None));
        prop_assert_eq!(fa.fingerprint, fb.fingerprint, "{:?} and {:?}", first, second);
    }

    #[test]
    fn a_restored_miner_gives_the_same_ids(lines in prop::collection::vec(log_line(), 1..40), split in 0usize..40) {
        let split = split.min(lines.len());
        let mut whole = Miner::default();
        let expected: Vec<u64> = lines.iter().map(|l| whole.add(&mask(l)).cluster_id).collect();
        let mut first = Miner::default();
        let mut ids: Vec<u64> = lines[..split].iter().map(|l| first.add(&mask(l)).cluster_id).collect();
        let mut restored = Miner::restore(first.snapshot());
        ids.extend(lines[split..].iter().map(|l| restored.add(&mask(l)).cluster_id));
        prop_assert_eq!(ids, expected);
    }

    /// The miner remembers recent lines to skip comparing them again; a miner restored before
    /// every line (which remembers nothing) must give the same ids.
    #[test]
    fn remembering_recent_lines_changes_no_id(
        pool in prop::collection::vec(log_line(), 1..8),
        order in prop::collection::vec(0usize..8, 1..60),
    ) {
        let stream: Vec<String> = order.iter().map(|i| mask(&pool[i % pool.len()])).collect();
        let mut remembering = Miner::default();
        let expected: Vec<u64> = stream.iter().map(|l| remembering.add(l).cluster_id).collect();
        let mut forgetful = Miner::default();
        let mut ids = Vec::new();
        for line in &stream {
            forgetful = Miner::restore(forgetful.snapshot());
            ids.push(forgetful.add(line).cluster_id);
        }
        prop_assert_eq!(ids, expected);
    }
}
