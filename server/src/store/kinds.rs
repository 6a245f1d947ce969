//! The small closed sets the database stores as text: who wrote a message, where a reply or a
//! job stands, where an image came from. Enums here, strings only at the SQL boundary, so a
//! typo is a compile error and not a row no query finds.

use std::fmt;

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Option<$name> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(
    /// Who wrote a message.
    Role { User = "user", Assistant = "assistant" }
);

text_enum!(
    /// Where a message stands. Assistant messages start `running` and end in one of the others.
    MessageStatus {
        Running = "running",
        Complete = "complete",
        Cancelled = "cancelled",
        Failed = "failed",
    }
);

text_enum!(
    /// How a run (one assistant turn) ended.
    RunStatus {
        Running = "running",
        Finished = "finished",
        Cancelled = "cancelled",
        Failed = "failed",
    }
);

text_enum!(
    /// Where an image was made.
    ImageSource { Chat = "chat", Studio = "studio", Api = "api", Cli = "cli" }
);

text_enum!(
    /// Where an image job stands.
    JobState {
        Queued = "queued",
        Running = "running",
        Done = "done",
        Failed = "failed",
        Cancelled = "cancelled",
    }
);

impl JobState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Failed | JobState::Cancelled
        )
    }
}

impl MessageStatus {
    /// The run status that goes with a final message status.
    pub fn run_status(self) -> RunStatus {
        match self {
            MessageStatus::Running => RunStatus::Running,
            MessageStatus::Complete => RunStatus::Finished,
            MessageStatus::Cancelled => RunStatus::Cancelled,
            MessageStatus::Failed => RunStatus::Failed,
        }
    }
}

/// Reads a stored enum; a value no variant knows is a broken row.
pub(super) fn column<T>(value: &str, parse: fn(&str) -> Option<T>) -> super::Result<T> {
    parse(value).ok_or_else(|| super::StoreError::Corrupt(format!("unknown value `{value}`")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_round_trips_through_its_text() {
        for s in JobState::ALL {
            assert_eq!(JobState::parse(s.as_str()), Some(*s));
        }
        for s in ImageSource::ALL {
            assert_eq!(ImageSource::parse(s.as_str()), Some(*s));
        }
        assert_eq!(MessageStatus::parse("done"), None);
        assert_eq!(MessageStatus::Complete.run_status(), RunStatus::Finished);
    }
}
