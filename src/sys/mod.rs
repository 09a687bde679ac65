//! The only module with `unsafe`: thin syscall wrappers whose errors name the
//! call and its operand. Callers see `std::io::Error` with context, never a
//! raw errno. Each `unsafe` block carries a `// SAFETY:` comment.

pub mod error;
pub mod fs;
pub mod mount;
pub mod net;
pub mod process;
pub mod signal;
pub mod tty;
