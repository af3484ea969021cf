//! The closed sets of states a user moves things through: a pattern's status and a task's.
//! Stored and sent as their snake_case names; everything else uses the enums.

use std::fmt;

/// The error of parsing a state name that is not one of the set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownState {
    pub what: &'static str,
    pub given: String,
    /// The names that would have been taken: "a, b or c".
    pub expected: String,
}

impl fmt::Display for UnknownState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {} {:?}: use {}", self.what, self.given, self.expected)
    }
}

impl std::error::Error for UnknownState {}

/// "a, b or c".
fn one_of<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    match names.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

macro_rules! states {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            /// Every state, in the order users see them.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            pub fn parse(s: &str) -> Option<$name> {
                match s {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownState;

            fn from_str(s: &str) -> Result<$name, UnknownState> {
                $name::parse(s).ok_or_else(|| UnknownState {
                    what: $what,
                    given: s.to_owned(),
                    expected: one_of($name::ALL.iter().map(|s| s.as_str())),
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }
    };
}

states! {
    /// What a user set a pattern to; a resolved pattern that comes again is `New` (a regression).
    PatternStatus, "pattern status" {
        New = "new",
        Known = "known",
        Resolved = "resolved",
        Ignored = "ignored",
    }
}

states! {
    /// Where an investigation task stands. `Open` and `InProgress` are open: an alert on the same
    /// subject adds to the task instead of creating another.
    TaskStatus, "task status" {
        Open = "open",
        InProgress = "in_progress",
        Done = "done",
        Dismissed = "dismissed",
    }
}

impl TaskStatus {
    /// Open or in progress: the task still wants work.
    pub fn is_open(self) -> bool {
        matches!(self, TaskStatus::Open | TaskStatus::InProgress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_say_what_is_expected() {
        for s in PatternStatus::ALL {
            assert_eq!(PatternStatus::parse(s.as_str()), Some(*s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for s in TaskStatus::ALL {
            assert_eq!(s.as_str().parse::<TaskStatus>(), Ok(*s));
        }
        let e = "closed".parse::<TaskStatus>().unwrap_err();
        assert_eq!(e.to_string(), "invalid task status \"closed\": use open, in_progress, done or dismissed");
    }
}
