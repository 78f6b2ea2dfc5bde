//! The vocabulary shared by the host (`cvm`) and the guest (`cvm-guest`): everything one side
//! writes and the other reads is defined here once, as types, so the two cannot drift apart.
//!
//! - [`marker`]: the lines the guest writes to tell the host where it is in its start-up;
//! - [`applet`]: the guest's applets, their options and the arguments the host reads, parsed
//!   by one flag parser ([`args`]);
//! - [`caps`]: the capability set a container workload keeps, on every container backend, and
//!   every capability's name by its bit;
//! - [`listen`]: how init (and, for native, the host) sees a workload's socket in LISTEN;
//! - [`isolation`]: the isolation scenario's aggressors, containment probes, audited namespaces
//!   and paths, and its applets' command lines;
//! - [`metric`]: what is measured (metric names and units), startup phase points and disk layers;
//! - [`app`]: the parsers an app scenario names for its client's output;
//! - [`vmconf`]: the VM configuration the host writes into the initramfs and init reads.
//!
//! The crate has no dependencies so that both the static guest binary and the host library can
//! share it.

/// An enum whose variants each have one spelling on the wire: `ALL` (in declaration order),
/// `name()`, `from_name()` and `Display`, generated from one table so a name is written once.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The one spelling of this variant.
            pub const fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The variant spelled `name`, if any.
            pub fn from_name(name: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|v| v.name() == name)
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

pub mod app;
pub mod applet;
pub mod args;
pub mod caps;
pub mod isolation;
pub mod listen;
pub mod marker;
pub mod metric;
pub mod vmconf;

pub use marker::{Marker, DEFAULT_MARKER_FD, MARKER_FD_ENV, PREFIX};
