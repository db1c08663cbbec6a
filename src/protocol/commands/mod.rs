//! Typed headers and JSON bodies of every command the broker, the name server and the clients exchange —
//! one file per command family (bodies share the readers in [`body`]), shared by the server (which decodes requests and encodes responses) and the client
//! (which does the reverse), so a field name or a range is written once.
//!
//! A header is RocketMQ's `extFields` map (JSON or RocketMQ's binary header, both decoded into the same
//! map by [`Command::decode`]). Decoding never panics: a missing required field, a number that does not
//! parse or a value out of its range is a [`HeaderError`] naming the field, which handlers answer as the
//! remark of their error response. Unknown fields are ignored, as RocketMQ does.

pub mod admin_views;
pub mod body;
pub mod clients;
#[cfg(test)]
mod fixtures;
pub mod namesrv;
pub mod offsets;
pub mod pull;
pub mod query;
pub mod send;
pub mod topics;
pub mod transaction;

/// Why a header did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderError {
    /// Wire name of the field.
    pub field: &'static str,
    pub why: String,
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "header field '{}' {}", self.field, self.why)
    }
}

impl std::error::Error for HeaderError {}

impl HeaderError {
    pub fn new(field: &'static str, why: impl Into<String>) -> HeaderError {
        HeaderError { field, why: why.into() }
    }
}

/// One header field's value type: how it reads from and writes to its `extFields` string.
pub trait Field: Sized {
    /// Decodes the value of `name`; `None` when the request does not carry it.
    fn decode_field(v: Option<&str>, name: &'static str) -> Result<Self, HeaderError>;
    /// The string to send; `None` leaves the field out.
    fn encode_field(&self) -> Option<String>;
}

fn required<'a>(v: Option<&'a str>, name: &'static str) -> Result<&'a str, HeaderError> {
    v.ok_or_else(|| HeaderError::new(name, "is required but missing"))
}

impl Field for String {
    fn decode_field(v: Option<&str>, name: &'static str) -> Result<String, HeaderError> {
        required(v, name).map(str::to_string)
    }
    fn encode_field(&self) -> Option<String> {
        Some(self.clone())
    }
}

impl Field for bool {
    /// Java's `Boolean.parseBoolean`: "true" in any case is true, anything else false.
    fn decode_field(v: Option<&str>, name: &'static str) -> Result<bool, HeaderError> {
        Ok(required(v, name)?.trim().eq_ignore_ascii_case("true"))
    }
    fn encode_field(&self) -> Option<String> {
        Some(self.to_string())
    }
}

macro_rules! number_field {
    ($($t:ty),*) => {$(
        impl Field for $t {
            fn decode_field(v: Option<&str>, name: &'static str) -> Result<$t, HeaderError> {
                let s = required(v, name)?;
                s.trim().parse::<$t>().map_err(|_| {
                    HeaderError::new(name, format!("is not a number in {}..={}: {s:?}", <$t>::MIN, <$t>::MAX))
                })
            }
            fn encode_field(&self) -> Option<String> {
                Some(self.to_string())
            }
        }
    )*};
}
number_field!(i32, i64, u32, u64);

impl<T: Field> Field for Option<T> {
    fn decode_field(v: Option<&str>, name: &'static str) -> Result<Option<T>, HeaderError> {
        v.map(|s| T::decode_field(Some(s), name)).transpose()
    }
    fn encode_field(&self) -> Option<String> {
        self.as_ref().and_then(Field::encode_field)
    }
}

/// Range checks a header makes after its fields decode (a queue id is not negative, …).
pub trait Checked {
    fn check(&self) -> Result<(), HeaderError> {
        Ok(())
    }
}

/// Fails unless `v` lies in `range`.
pub fn in_range<T: PartialOrd + std::fmt::Display>(
    field: &'static str,
    v: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<(), HeaderError> {
    if range.contains(&v) {
        Ok(())
    } else {
        Err(HeaderError::new(field, format!("= {v} is outside {}..={}", range.start(), range.end())))
    }
}

/// Declares a header: a struct whose fields each name their wire key, with `decode` (fields, then
/// [`Checked::check`]) and `encode`. `Option` fields are optional on the wire; the others are required.
macro_rules! header {
    ($(#[$m:meta])* pub struct $name:ident { $( $(#[$fm:meta])* pub $f:ident : $t:ty = $wire:literal ),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Default)]
        pub struct $name { $( $(#[$fm])* pub $f: $t ),* }

        impl $name {
            /// Wire names of the fields, in declaration order.
            pub const FIELDS: &'static [&'static str] = &[$($wire),*];

            /// Decodes and range-checks the header of `cmd`.
            pub fn decode(cmd: &$crate::protocol::Command) -> Result<$name, $crate::protocol::commands::HeaderError> {
                let h = $name { $( $f: <$t as $crate::protocol::commands::Field>::decode_field(cmd.field($wire), $wire)? ),* };
                $crate::protocol::commands::Checked::check(&h)?;
                Ok(h)
            }

            /// Writes the fields into `cmd`'s header (optional fields that are `None` are left out).
            pub fn encode(&self, cmd: &mut $crate::protocol::Command) {
                $( if let Some(v) = $crate::protocol::commands::Field::encode_field(&self.$f) { cmd.put($wire, v); } )*
            }

            /// A request with `code` carrying this header.
            pub fn request(&self, code: i32) -> $crate::protocol::Command {
                let mut cmd = $crate::protocol::Command::request(code);
                self.encode(&mut cmd);
                cmd
            }
        }
    };
}
pub(crate) use header;

/// Test helpers every command file uses: round trip through the wire encoding, and the guarantee that
/// dropping any required field is an error naming it rather than a panic or a default.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::protocol::Command;

    /// Encodes `cmd` to a frame and decodes it back (JSON header), as the peer would receive it.
    pub fn over_the_wire(cmd: &Command) -> Command {
        let frame = bytes::Bytes::from(cmd.encode());
        let (back, used) = Command::decode(&frame, usize::MAX).expect("decodes").expect("whole frame");
        assert_eq!(used, frame.len());
        back
    }

    /// Every field of `required` missing in turn makes `decode` fail on that field.
    pub fn each_required_field_is_checked<H>(
        full: &Command,
        required: &[&'static str],
        decode: impl Fn(&Command) -> Result<H, HeaderError>,
    ) {
        for name in required {
            let mut c = full.clone();
            c.ext.remove(name);
            match decode(&c) {
                Err(e) => assert_eq!(e.field, *name, "{e}"),
                Ok(_) => panic!("decoded without required field {name}"),
            }
        }
    }

    /// Garbage in any field is an error or a value, never a panic.
    pub fn garbage_never_panics<H>(full: &Command, decode: impl Fn(&Command) -> Result<H, HeaderError>) {
        let junk = ["", " ", "-", "99999999999999999999999", "-1", "NaN", "\u{0}", "1e9", "0x10", "true"];
        for key in full.ext.keys().map(str::to_string).collect::<Vec<_>>() {
            for j in junk {
                let mut c = full.clone();
                c.ext.insert(&key, j);
                let _ = decode(&c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_fields_name_the_field_and_the_range() {
        let e = <i32 as Field>::decode_field(Some("4294967296"), "queueId").unwrap_err();
        assert_eq!(e.field, "queueId");
        assert!(e.to_string().contains("-2147483648..=2147483647"), "{e}");
        assert_eq!(<u64 as Field>::decode_field(Some(" 7 "), "x").unwrap(), 7);
        assert!(<u64 as Field>::decode_field(Some("-1"), "x").is_err());
        assert_eq!(<Option<u32> as Field>::decode_field(None, "x").unwrap(), None);
        assert!(<Option<u32> as Field>::decode_field(Some("x"), "x").is_err());
        assert!(<String as Field>::decode_field(None, "topic").unwrap_err().to_string().contains("missing"));
        assert!(<bool as Field>::decode_field(Some("TRUE"), "b").unwrap());
        assert!(!<bool as Field>::decode_field(Some("yes"), "b").unwrap());
    }
}
