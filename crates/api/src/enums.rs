//! A small macro for the string enums used in specs and statuses, and the error returned when
//! text does not name one of their values.

/// Text that is not one of the values an enum field allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: unknown value {value:?}; allowed: {}", .allowed.join(", "))]
pub struct UnknownValue {
    /// The field (or enum) the text was meant for.
    pub field: &'static str,
    /// The text that was given.
    pub value: String,
    /// The allowed values.
    pub allowed: &'static [&'static str],
}

/// Declares a string enum with serde/schemars derives, `as_str`, `ALL`, `Display` and `FromStr`.
///
/// Each variant is written `Variant => "wire-value"` and carries its own doc comment.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident as $field:literal {
            $( $(#[$vmeta:meta])* $variant:ident => $wire:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            ::serde::Serialize, ::serde::Deserialize, ::schemars::JsonSchema,
        )]
        $vis enum $name {
            $( $(#[$vmeta])* #[serde(rename = $wire)] $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value as written in YAML.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $wire, )+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::enums::UnknownValue;

            fn from_str(s: &str) -> ::std::result::Result<Self, Self::Err> {
                match s {
                    $( $wire => Ok($name::$variant), )+
                    _ => Err($crate::enums::UnknownValue {
                        field: $field,
                        value: s.to_owned(),
                        allowed: &[$($wire),+],
                    }),
                }
            }
        }
    };
}

pub(crate) use string_enum;
