//! How many system calls the host kernel accepts from one process: its seccomp filters (read
//! with `sys::seccomp`), run over every number of the x86-64 system call table.
//!
//! A filter is classic BPF over `struct seccomp_data` (the call's number, the architecture,
//! the instruction pointer, six arguments). It is evaluated here abstractly: the number and the
//! architecture are known, the instruction pointer and the arguments are not, so a jump on them
//! takes both ways. A call counts as accepted when some way through every filter ends in an
//! action that lets it reach the kernel (allow, log, or a tracer's or supervisor's decision):
//! accepted for some arguments, the attack surface's upper bound. A process without filters
//! accepts the whole table.

use std::collections::HashSet;

pub use crate::sys::seccomp::SockFilter;

/// `AUDIT_ARCH_X86_64`.
const ARCH_X86_64: u32 = 0xc000_003e;

/// The x86-64 system call numbers as of Linux 6.17: 0-334 and 424-469 (335-423 were never
/// used, 512 and up are x32's).
pub fn syscall_table() -> impl Iterator<Item = u32> {
    (0..=334).chain(424..=469)
}

/// The part of a return value that is the action (`SECCOMP_RET_ACTION_FULL`).
const ACTION_MASK: u32 = 0xffff_0000;
const RET_USER_NOTIF: u32 = 0x7fc0_0000;
const RET_TRACE: u32 = 0x7ff0_0000;
const RET_LOG: u32 = 0x7ffc_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

/// How far one call's evaluation may go before it is counted as accepted unexamined.
const STEP_BUDGET: usize = 200_000;

/// Whether an action lets the call reach the kernel (or leaves it to a tracer or supervisor,
/// which may).
fn reaches(action: u32) -> bool {
    matches!(
        action & ACTION_MASK,
        RET_ALLOW | RET_LOG | RET_TRACE | RET_USER_NOTIF
    )
}

/// A register or scratch word: known, or depending on what is not (arguments, ip).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Val {
    Known(u32),
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct State {
    pc: usize,
    a: Val,
    x: Val,
    mem: [Val; 16],
}

/// The word at `offset` of `seccomp_data` for call `nr`.
fn load(nr: u32, offset: u32) -> Val {
    match offset {
        0 => Val::Known(nr),
        4 => Val::Known(ARCH_X86_64),
        _ => Val::Unknown,
    }
}

fn alu(op: u16, a: u32, b: u32) -> Option<u32> {
    Some(match op {
        0x00 => a.wrapping_add(b),
        0x10 => a.wrapping_sub(b),
        0x20 => a.wrapping_mul(b),
        0x30 => a.checked_div(b)?,
        0x40 => a | b,
        0x50 => a & b,
        0x60 => a.checked_shl(b).unwrap_or(0),
        0x70 => a.checked_shr(b).unwrap_or(0),
        0x80 => a.wrapping_neg(),
        0x90 => a.checked_rem(b)?,
        0xa0 => a ^ b,
        _ => return None,
    })
}

/// The outcome of a conditional jump: taken, not taken, or either.
fn compare(op: u16, a: Val, b: Val) -> Option<bool> {
    let (Val::Known(a), Val::Known(b)) = (a, b) else {
        return None;
    };
    Some(match op {
        0x10 => a == b,
        0x20 => a > b,
        0x30 => a >= b,
        _ => a & b != 0,
    })
}

/// Whether some way through `prog` for call `nr` reaches the kernel; `true` also when the
/// program is cut short by [`STEP_BUDGET`] or malformed (the surface is not underestimated).
pub fn may_reach(prog: &[SockFilter], nr: u32) -> bool {
    let mut stack = vec![State {
        pc: 0,
        a: Val::Known(0),
        x: Val::Known(0),
        mem: [Val::Known(0); 16],
    }];
    let mut seen: HashSet<State> = HashSet::new();
    let mut steps = 0;
    while let Some(mut s) = stack.pop() {
        if !seen.insert(s.clone()) {
            continue;
        }
        loop {
            steps += 1;
            if steps > STEP_BUDGET {
                return true;
            }
            let Some(ins) = prog.get(s.pc) else {
                return true;
            };
            let class = ins.code & 0x07;
            s.pc += 1;
            match class {
                // LD / LDX
                0x00 | 0x01 => {
                    let v = match ins.code & 0xe0 {
                        0x00 => Val::Known(ins.k),
                        0x20 => load(nr, ins.k),
                        0x60 => s.mem.get(ins.k as usize).copied().unwrap_or(Val::Unknown),
                        // sizeof(struct seccomp_data)
                        0x80 => Val::Known(64),
                        _ => Val::Unknown,
                    };
                    if class == 0x00 {
                        s.a = v;
                    } else {
                        s.x = v;
                    }
                }
                // ST / STX
                0x02 | 0x03 => {
                    let v = if class == 0x02 { s.a } else { s.x };
                    if let Some(m) = s.mem.get_mut(ins.k as usize) {
                        *m = v;
                    }
                }
                // ALU
                0x04 => {
                    let b = if ins.code & 0x08 != 0 {
                        s.x
                    } else {
                        Val::Known(ins.k)
                    };
                    s.a = match (s.a, b) {
                        (Val::Known(a), Val::Known(b)) => {
                            alu(ins.code & 0xf0, a, b).map_or(Val::Unknown, Val::Known)
                        }
                        _ => Val::Unknown,
                    };
                }
                // JMP
                0x05 => {
                    let op = ins.code & 0xf0;
                    if op == 0x00 {
                        s.pc += ins.k as usize;
                        continue;
                    }
                    let b = if ins.code & 0x08 != 0 {
                        s.x
                    } else {
                        Val::Known(ins.k)
                    };
                    let (taken, not) = (s.pc + usize::from(ins.jt), s.pc + usize::from(ins.jf));
                    match compare(op, s.a, b) {
                        Some(true) => s.pc = taken,
                        Some(false) => s.pc = not,
                        None => {
                            stack.push(State {
                                pc: not,
                                ..s.clone()
                            });
                            s.pc = taken;
                        }
                    }
                }
                // RET
                0x06 => {
                    let action = match (ins.code & 0x18, s.a) {
                        (0x10, Val::Known(a)) => a,
                        (0x10, Val::Unknown) => return true,
                        _ => ins.k,
                    };
                    if reaches(action) {
                        return true;
                    }
                    break;
                }
                // MISC: TAX / TXA
                _ => {
                    if ins.code & 0xf8 == 0x80 {
                        s.a = s.x;
                    } else {
                        s.x = s.a;
                    }
                }
            }
        }
    }
    false
}

/// The numbers of the table every filter may let through (all of them with no filter).
pub fn accepted(filters: &[Vec<SockFilter>]) -> Vec<u32> {
    syscall_table()
        .filter(|&nr| filters.iter().all(|f| may_reach(f, nr)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stmt(code: u16, k: u32) -> SockFilter {
        SockFilter {
            code,
            jt: 0,
            jf: 0,
            k,
        }
    }
    fn jump(code: u16, k: u32, jt: u8, jf: u8) -> SockFilter {
        SockFilter { code, jt, jf, k }
    }
    const LD_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const JSET_K: u16 = 0x45;
    const RET_K: u16 = 0x06;
    const ERRNO_EPERM: u32 = 0x0005_0001;

    /// Checks the architecture, denies one call, and allows another only for one first
    /// argument, as Docker's profile does for `personality` (the rest: EPERM).
    fn profile() -> Vec<SockFilter> {
        vec![
            stmt(LD_ABS, 4),
            jump(JEQ_K, ARCH_X86_64, 1, 0),
            stmt(RET_K, 0),
            stmt(LD_ABS, 0),
            jump(JEQ_K, 165, 0, 1), // mount
            stmt(RET_K, ERRNO_EPERM),
            jump(JEQ_K, 135, 0, 3), // personality
            stmt(LD_ABS, 16),       // args[0], unknown
            jump(JEQ_K, 8, 0, 1),
            stmt(RET_K, RET_ALLOW),
            jump(JSET_K, 0x4000_0000, 1, 0), // x32 numbers: not on this table
            stmt(RET_K, RET_ALLOW),
            stmt(RET_K, ERRNO_EPERM),
        ]
    }

    #[test]
    fn a_denied_call_is_refused_and_an_argument_checked_one_may_pass() {
        let p = profile();
        assert!(!may_reach(&p, 165));
        assert!(may_reach(&p, 135), "allowed for args[0] == 8");
        assert!(may_reach(&p, 0));
        let accepted = accepted(&[p]);
        assert_eq!(accepted.len(), syscall_table().count() - 1);
        assert!(!accepted.contains(&165));
    }

    #[test]
    fn every_filter_must_let_a_call_through_and_none_lets_everything() {
        let deny_read = vec![
            stmt(LD_ABS, 0),
            jump(JEQ_K, 0, 0, 1),
            stmt(RET_K, ERRNO_EPERM),
            stmt(RET_K, RET_LOG),
        ];
        let all = accepted(&[]);
        assert_eq!(all.len(), 381);
        let both = accepted(&[profile(), deny_read]);
        assert!(!both.contains(&0) && !both.contains(&165));
        assert_eq!(both.len(), all.len() - 2);
        // A kill-everything filter lets nothing through; a malformed one is not trusted.
        assert!(accepted(&[vec![stmt(RET_K, 0)]]).is_empty());
        assert!(may_reach(&[stmt(LD_ABS, 0)], 1));
    }
}
