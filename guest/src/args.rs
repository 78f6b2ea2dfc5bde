//! The flag parser every applet uses: the one in `cvm_proto`, so the host reads an applet's
//! arguments (the io applet's `--dir`, say) exactly as the applet does.

pub use cvm_proto::args::*;
