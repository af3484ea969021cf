//! Fingerprints: the stable id of "the same error", from the stack or the masked message.
//!
//! Version 1 groups by, in order:
//! 1. the **stack signature** when the event has frames: exception types (the whole chain) plus
//!    each frame as module/file basename + function, without line numbers or directories, with
//!    direct recursion collapsed;
//! 2. the **exception type + masked value** when there is an exception line but no frames;
//! 3. the **masked message** otherwise.
//!
//! The fingerprint is the SHA-256 of that normalised form, as 64 lower-case hex characters.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::mask::mask_into;
use crate::model::LogEvent;
use crate::parse::exception_name;

/// Stored with every pattern so a later algorithm can tell its own patterns apart.
pub const FINGERPRINT_VERSION: i32 = 1;

/// Longest message text that takes part in grouping; longer messages are cut first.
const MAX_GROUPED_BYTES: usize = 2048;

/// A SHA-256 fingerprint as 64 lower-case hex characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// Accepts exactly 64 hex characters.
    pub fn parse(s: &str) -> Option<Fingerprint> {
        (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Fingerprint(s.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which rule decided the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Stack,
    Exception,
    Message,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Stack => "stack",
            Tier::Exception => "exception",
            Tier::Message => "message",
        }
    }
}

/// One frame of a stack signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackFrame {
    /// Module, class or file basename (no directories, no line numbers).
    pub module: String,
    pub function: String,
}

/// The result of grouping one event, with the parts that counted.
#[derive(Debug, Clone, PartialEq)]
pub struct Grouping {
    pub fingerprint: Fingerprint,
    pub tier: Tier,
    /// The masked message shown to users as the pattern's template.
    pub template: String,
    /// The outermost exception type, e.g. `KeyError` or `java.lang.IllegalStateException`.
    pub error_type: Option<String>,
    pub frames: Vec<StackFrame>,
}

/// Groups one event.
pub fn fingerprint(event: &LogEvent) -> Grouping {
    let message = cut(&event.message, MAX_GROUPED_BYTES);
    let mut template = String::with_capacity(message.len());
    mask_into(message, &mut template);

    let trace = event.traceback.as_deref().unwrap_or("");
    let (error_types, value) = exception_chain(message, trace);
    let frames = frames(trace);
    let error_type = error_types.first().cloned();

    let mut hasher = Sha256::new();
    hasher.update(b"faultline/1\n");
    let tier = if !frames.is_empty() {
        hasher.update(b"stack\n");
        for t in &error_types {
            hasher.update(t.as_bytes());
            hasher.update(b"|");
        }
        for f in &frames {
            hasher.update(b"\n");
            hasher.update(f.module.as_bytes());
            hasher.update(b":");
            hasher.update(f.function.as_bytes());
        }
        Tier::Stack
    } else if let (Some(t), Some(v)) = (&error_type, value) {
        hasher.update(b"exception\n");
        hasher.update(t.as_bytes());
        hasher.update(b"\n");
        let mut masked = String::with_capacity(v.len());
        mask_into(cut(v, MAX_GROUPED_BYTES), &mut masked);
        hasher.update(masked.as_bytes());
        Tier::Exception
    } else {
        hasher.update(b"message\n");
        hasher.update(template.as_bytes());
        Tier::Message
    };
    let fingerprint = Fingerprint(hex::encode(hasher.finalize()));
    Grouping { fingerprint, tier, template, error_type, frames }
}

fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Exception types found in the message and traceback, outermost first, and the value of the
/// first one (the text after `Type: `).
fn exception_chain<'a>(message: &'a str, trace: &'a str) -> (Vec<String>, Option<&'a str>) {
    let mut types: Vec<String> = Vec::new();
    let mut value = None;
    let mut note = |line: &'a str, types: &mut Vec<String>| {
        let line = line.trim_start();
        let line = line.strip_prefix("Caused by: ").unwrap_or(line);
        let line = match line.strip_prefix("Exception in thread \"") {
            Some(rest) => rest.split_once("\" ").map_or(rest, |(_, r)| r),
            None => line,
        };
        if let Some(name) = exception_name(line) {
            if value.is_none() {
                value = Some(line[name.len()..].trim_start_matches(':').trim());
            }
            if !types.iter().any(|t| t == name) {
                types.push(name.to_owned());
            }
        }
    };
    // A Python traceback ends with its exception line, so read Python chains bottom-up.
    let python = trace.contains("Traceback (most recent call last):");
    if python {
        for line in trace.lines().rev().filter(|l| !l.starts_with([' ', '\t']) && !l.starts_with("Traceback"))
        {
            note(line, &mut types);
        }
    } else {
        note(message, &mut types);
        for line in trace.lines().filter(|l| !l.starts_with("\tat ") && !l.starts_with("    at ")) {
            note(line, &mut types);
        }
    }
    if types.is_empty() && (message.starts_with("panic: ") || message.contains("' panicked at")) {
        types.push("panic".to_owned());
    }
    (types, value)
}

/// Stack frames found in a traceback, in the order printed, recursion collapsed.
fn frames(trace: &str) -> Vec<StackFrame> {
    let mut out: Vec<StackFrame> = Vec::new();
    let mut lines = trace.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        let frame = if let Some(rest) = t.strip_prefix("File \"") {
            // Python:   File "/app/db.py", line 3, in get
            rest.split_once('"').map(|(path, tail)| StackFrame {
                module: basename(path).trim_end_matches(".py").to_owned(),
                function: tail.rsplit_once(", in ").map_or("", |(_, f)| f).trim().to_owned(),
            })
        } else if let Some(rest) = t.strip_prefix("at ").filter(|_| line.starts_with([' ', '\t'])) {
            java_or_node_frame(rest)
        } else if let Some(name) =
            go_function(line).filter(|_| lines.peek().is_some_and(|n| n.starts_with('\t')))
        {
            // Go: main.(*Server).handle(0xc000010000)  followed by  \t/app/server.go:42 +0x1d
            let (module, function) = name.rsplit_once('.').unwrap_or(("", name));
            Some(StackFrame { module: module.to_owned(), function: function.to_owned() })
        } else if let Some((num, path)) =
            t.split_once(": ").filter(|(n, _)| n.bytes().all(|b| b.is_ascii_digit()) && !n.is_empty())
        {
            // Rust backtrace:    3: my_app::handler::run
            let _ = num;
            let path = path.trim();
            let (module, function) = path.rsplit_once("::").unwrap_or(("", path));
            Some(StackFrame { module: module.to_owned(), function: function.to_owned() })
        } else {
            None
        };
        if let Some(frame) = frame.filter(|f| !f.function.is_empty() || !f.module.is_empty())
            && out.last() != Some(&frame)
        {
            out.push(frame);
        }
    }
    out
}

/// The function a Go goroutine-dump line names: `main.(*T).run(0xc0…)` or
/// `created by main.main in goroutine 1`; `None` for any other line.
fn go_function(line: &str) -> Option<&str> {
    if line.starts_with([' ', '\t']) || line.starts_with("goroutine ") {
        return None;
    }
    if let Some(rest) = line.strip_prefix("created by ") {
        return Some(rest.split(" in goroutine ").next().unwrap_or(rest));
    }
    let open = line.rfind('(')?;
    let name = &line[..open];
    (line.ends_with(')') && !name.is_empty() && !name.contains(' ')).then_some(name)
}

fn java_or_node_frame(rest: &str) -> Option<StackFrame> {
    let rest = rest.trim();
    match rest.split_once(" (") {
        // Node:    at handler (/app/src/routes.js:10:5)
        Some((function, location)) => {
            let file = location.trim_end_matches(')');
            let file = strip_line_numbers(basename(file));
            Some(StackFrame { module: file.to_owned(), function: function.trim().to_owned() })
        }
        None => {
            // Java:  at com.acme.Billing.charge(Billing.java:42)
            if let Some(open) = rest.find('(') {
                let name = &rest[..open];
                let (module, function) = name.rsplit_once('.').unwrap_or(("", name));
                return Some(StackFrame { module: module.to_owned(), function: function.to_owned() });
            }
            // Node, anonymous:    at /app/src/index.js:3:9
            Some(StackFrame {
                module: strip_line_numbers(basename(rest)).to_owned(),
                function: String::new(),
            })
        }
    }
}

fn basename(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

/// `routes.js:10:5` → `routes.js`
fn strip_line_numbers(file: &str) -> &str {
    let mut s = file;
    while let Some((head, tail)) = s.rsplit_once(':') {
        if tail.bytes().all(|b| b.is_ascii_digit()) {
            s = head;
        } else {
            break;
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Level, Origin};

    fn event(message: &str, traceback: Option<&str>) -> LogEvent {
        LogEvent {
            timestamp_ms: 0,
            level: Level::Error,
            source: String::new(),
            message: message.to_owned(),
            traceback: traceback.map(str::to_owned),
            request_path: None,
            request_method: None,
            metadata: Default::default(),
            raw: String::new(),
            origin: Origin { source_id: "t".into(), external_id: None },
        }
    }

    const PY: &str = "Traceback (most recent call last):\n  File \"/srv/app/api.py\", line 9, in view\n    return get(k)\n  File \"/srv/app/db.py\", line 3, in get\n    raise KeyError(k)\nKeyError: 'user'";

    #[test]
    fn same_stack_different_values_and_lines_group_together() {
        let a = fingerprint(&event("lookup failed for 42", Some(PY)));
        let other = PY
            .replace("line 9", "line 11")
            .replace("/srv/app", "/opt/release-7")
            .replace("'user'", "'order'");
        let b = fingerprint(&event("lookup failed for 43", Some(&other)));
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.tier, Tier::Stack);
        assert_eq!(a.error_type.as_deref(), Some("KeyError"));
        let frames: Vec<String> = a.frames.iter().map(|f| format!("{}:{}", f.module, f.function)).collect();
        assert_eq!(frames, ["api:view", "db:get"]);
    }

    #[test]
    fn different_stacks_do_not_group() {
        let a = fingerprint(&event("x", Some(PY)));
        let b = fingerprint(&event("x", Some(&PY.replace("in get", "in put"))));
        assert_ne!(a.fingerprint, b.fingerprint);
    }

    #[test]
    fn java_frames_and_causes() {
        let trace = "java.lang.IllegalStateException: card 4242 declined\n\tat com.acme.Billing.charge(Billing.java:42)\n\tat com.acme.Billing.charge(Billing.java:42)\n\tat com.acme.Api.pay(Api.java:7)\nCaused by: java.io.IOException: reset\n\t... 3 more";
        let g = fingerprint(&event("charge failed", Some(trace)));
        assert_eq!(g.error_type.as_deref(), Some("java.lang.IllegalStateException"));
        let frames: Vec<String> = g.frames.iter().map(|f| format!("{}:{}", f.module, f.function)).collect();
        assert_eq!(frames, ["com.acme.Billing:charge", "com.acme.Api:pay"]);
    }

    #[test]
    fn java_exception_line_ending_in_a_parenthesis_is_not_a_go_frame() {
        let trace = |sku: &str| {
            format!(
                "java.lang.IllegalStateException: stock for sku {sku} went negative (-2)\n\tat com.acme.Stock.reserve(Stock.java:142)"
            )
        };
        let a = fingerprint(&event("reservation failed", Some(&trace("88-1423"))));
        let b = fingerprint(&event("reservation failed", Some(&trace("91-0007"))));
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.frames.len(), 1);
    }

    #[test]
    fn go_and_node_frames() {
        let go = "goroutine 1 [running]:\nmain.lookup(...)\n\t/app/main.go:12\nmain.(*Server).run(0xc0000)\n\t/app/server.go:20 +0x1d\ncreated by main.main in goroutine 1\n\t/app/main.go:30 +0x1a5";
        let frames: Vec<String> = frames(go).iter().map(|f| format!("{}:{}", f.module, f.function)).collect();
        assert_eq!(frames, ["main:lookup", "main.(*Server):run", "main:main"]);
        let node = "TypeError: x is undefined\n    at handler (/app/src/routes.js:10:5)\n    at /app/src/index.js:3:9";
        let frames: Vec<String> =
            super::frames(node).iter().map(|f| format!("{}:{}", f.module, f.function)).collect();
        assert_eq!(frames, ["routes.js:handler", "index.js:"]);
    }

    #[test]
    fn messages_group_by_masked_template() {
        let a = fingerprint(&event("timeout after 30s talking to 10.0.0.1:5432", None));
        let b = fingerprint(&event("timeout after 45s talking to 10.0.0.9:5432", None));
        let c = fingerprint(&event("disk full on /dev/sda1", None));
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_ne!(a.fingerprint, c.fingerprint);
        assert_eq!(a.template, "timeout after <DUR> talking to <IP>");
        assert_eq!(a.fingerprint.as_str().len(), 64);
    }

    #[test]
    fn exception_without_frames_groups_by_type_and_value() {
        let a = fingerprint(&event("ValueError: invalid literal for int() with base 10: 'abc'", None));
        let b = fingerprint(&event("ValueError: invalid literal for int() with base 10: 'xyz'", None));
        assert_eq!((a.tier, a.fingerprint.clone()), (Tier::Exception, b.fingerprint));
    }
}
