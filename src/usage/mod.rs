//! What a set of processes or files uses, each by its one counting rule: memory by the
//! resident-process rule (PSS, a VMM's mappings split by what they hold), disk by the layer
//! rule (each file once, in the lowest layer that needs it) and an executable's installed bytes.
//! Pure readers of `/proc` and the filesystem, with no other module of cvm beneath them: a
//! backend uses them to describe what it is, `compare` and `measure` to measure it.

pub mod disk;
pub mod installed;
pub mod memory;
