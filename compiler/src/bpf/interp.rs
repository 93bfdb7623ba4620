//! The project's own classic-BPF interpreter for seccomp filters.
//!
//! It accepts exactly what Linux accepts for `seccomp(SECCOMP_SET_MODE_FILTER)`:
//! `bpf_check_classic` (net/core/filter.c), including its `check_load_and_stores`
//! scratch-memory rule, followed by `seccomp_check_filter` (kernel/seccomp.c). A
//! program is only run once [`check`] has accepted it: [`Program`] can only be made
//! by checking, and [`run`] checks first.
//!
//! Run-time semantics are those of the kernel's translation of classic BPF
//! (`bpf_convert_filter`): A and X start at zero, arithmetic is on `u32` and wraps,
//! division by a zero X returns 0 from the program (SECCOMP_RET_KILL_THREAD), and a
//! shift by X uses the low five bits of X (the interpreter and the x86_64/arm64 JITs
//! all mask the count that way).

use super::{
    BPF_A, BPF_ABS, BPF_ALU, BPF_AND, BPF_IMM, BPF_JA, BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JMP, BPF_JSET, BPF_K, BPF_LD,
    BPF_LDX, BPF_MEM, BPF_MISC, BPF_OR, BPF_RET, BPF_ST, BPF_STX, BPF_TAX, BPF_TXA, BPF_W, BPF_X, DecodeError, Insn,
    MAX_INSNS, SECCOMP_DATA_SIZE, SECCOMP_RET_ACTION_FULL, SECCOMP_RET_ALLOW, SECCOMP_RET_DATA, SECCOMP_RET_ERRNO,
    SECCOMP_RET_KILL_PROCESS, SECCOMP_RET_KILL_THREAD, SECCOMP_RET_LOG, SECCOMP_RET_TRACE, SECCOMP_RET_TRAP,
    SECCOMP_RET_USER_NOTIF,
};

// Opcode parts from linux/bpf_common.h that the shared constants do not name.
const BPF_H: u16 = 0x08;
const BPF_B: u16 = 0x10;
const BPF_IND: u16 = 0x40;
const BPF_LEN: u16 = 0x80;
const BPF_MSH: u16 = 0xa0;
const BPF_ADD: u16 = 0x00;
const BPF_SUB: u16 = 0x10;
const BPF_MUL: u16 = 0x20;
const BPF_DIV: u16 = 0x30;
const BPF_LSH: u16 = 0x60;
const BPF_RSH: u16 = 0x70;
const BPF_NEG: u16 = 0x80;
const BPF_MOD: u16 = 0x90;
const BPF_XOR: u16 = 0xa0;
/// `BPF_MEMWORDS`: the scratch memory `M[0..16]`.
pub const MEM_WORDS: usize = 16;
/// The kernel caps `SECCOMP_RET_ERRNO` data at `MAX_ERRNO`.
pub const MAX_ERRNO: u16 = 4095;

/// `struct seccomp_data` as the filter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeccompData {
    /// The kernel's `int nr`, as its bit pattern.
    pub nr: u32,
    pub arch: u32,
    pub instruction_pointer: u64,
    pub args: [u64; 6],
}

impl SeccompData {
    /// The 32-bit word at byte `offset` of the structure laid out little-endian
    /// (x86_64 and aarch64). `offset` is a multiple of 4 below 64: the checks refused
    /// every other load.
    fn word_at(&self, offset: u32) -> u32 {
        let halves = |v: u64| {
            if offset.is_multiple_of(8) { v as u32 } else { (v >> 32) as u32 }
        };
        match offset {
            0 => self.nr,
            4 => self.arch,
            8 | 12 => halves(self.instruction_pointer),
            16..SECCOMP_DATA_SIZE => halves(self.args[(offset as usize - 16) / 8]),
            _ => unreachable!("load offset {offset} was not checked"),
        }
    }
}

/// An arithmetic operation on A.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AluOp {
    Add,
    Sub,
    Mul,
    Div,
    And,
    Or,
    Xor,
    Lsh,
    Rsh,
}

/// A conditional jump's comparison of A with its operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JmpOp {
    Eq,
    Gt,
    Ge,
    Set,
}

/// The second operand of an ALU or jump instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Src {
    K(u32),
    X,
}

/// One instruction of the seccomp subset, decoded. Every `Insn` the seccomp checker
/// accepts decodes to exactly one `Op`, and every `Op` encodes back to one opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `A = seccomp_data[k]` (32 bits).
    LdAbs(u32),
    /// `A = sizeof(struct seccomp_data)`: the kernel rewrites `BPF_LD|BPF_W|BPF_LEN` to that.
    LdLen,
    /// `X = sizeof(struct seccomp_data)`.
    LdxLen,
    LdImm(u32),
    LdxImm(u32),
    LdMem(u32),
    LdxMem(u32),
    St(u32),
    Stx(u32),
    Alu(AluOp, Src),
    Neg,
    /// Jump forward `k + 1` instructions.
    Ja(u32),
    Jmp {
        op: JmpOp,
        src: Src,
        jt: u8,
        jf: u8,
    },
    RetK(u32),
    RetA,
    Tax,
    Txa,
}

/// Why the seccomp checker rejects an instruction's opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpcodeRejection {
    /// Not a classic BPF opcode at all (`chk_code_allowed`).
    Unknown,
    /// Classic BPF, but only for socket filters (byte/half-word and indirect loads,
    /// `BPF_MOD`): `seccomp_check_filter` refuses it.
    NotForSeccomp,
}

impl Op {
    /// Decode an instruction's opcode, as `chk_code_allowed` then `seccomp_check_filter`
    /// do. Operand checks (offsets, jump ranges, ...) are left to [`check`].
    pub fn decode(insn: Insn) -> Result<Op, OpcodeRejection> {
        let Insn { code, jt, jf, k } = insn;
        let alu = |op| Ok(Op::Alu(op, if code & BPF_X != 0 { Src::X } else { Src::K(k) }));
        let jmp = |op| Ok(Op::Jmp { op, src: if code & BPF_X != 0 { Src::X } else { Src::K(k) }, jt, jf });
        match code {
            c if c == BPF_LD | BPF_W | BPF_ABS => Ok(Op::LdAbs(k)),
            c if c == BPF_LD | BPF_W | BPF_LEN => Ok(Op::LdLen),
            c if c == BPF_LDX | BPF_W | BPF_LEN => Ok(Op::LdxLen),
            c if c == BPF_LD | BPF_IMM => Ok(Op::LdImm(k)),
            c if c == BPF_LDX | BPF_IMM => Ok(Op::LdxImm(k)),
            c if c == BPF_LD | BPF_MEM => Ok(Op::LdMem(k)),
            c if c == BPF_LDX | BPF_MEM => Ok(Op::LdxMem(k)),
            c if c == BPF_ST => Ok(Op::St(k)),
            c if c == BPF_STX => Ok(Op::Stx(k)),
            c if c == BPF_MISC | BPF_TAX => Ok(Op::Tax),
            c if c == BPF_MISC | BPF_TXA => Ok(Op::Txa),
            c if c == BPF_RET | BPF_K => Ok(Op::RetK(k)),
            c if c == BPF_RET | BPF_A => Ok(Op::RetA),
            c if c == BPF_JMP | BPF_JA => Ok(Op::Ja(k)),
            c if c == BPF_ALU | BPF_NEG => Ok(Op::Neg),
            // BPF_ALU | operation (high nibble) | BPF_K or BPF_X, and no other bits.
            c if c & !(0xf0 | BPF_X) == BPF_ALU => match c & 0xf0 {
                BPF_ADD => alu(AluOp::Add),
                BPF_SUB => alu(AluOp::Sub),
                BPF_MUL => alu(AluOp::Mul),
                BPF_DIV => alu(AluOp::Div),
                BPF_AND => alu(AluOp::And),
                BPF_OR => alu(AluOp::Or),
                BPF_XOR => alu(AluOp::Xor),
                BPF_LSH => alu(AluOp::Lsh),
                BPF_RSH => alu(AluOp::Rsh),
                BPF_MOD => Err(OpcodeRejection::NotForSeccomp),
                _ => Err(OpcodeRejection::Unknown),
            },
            c if c & !(0xf0 | BPF_X) == BPF_JMP => match c & 0xf0 {
                BPF_JEQ => jmp(JmpOp::Eq),
                BPF_JGT => jmp(JmpOp::Gt),
                BPF_JGE => jmp(JmpOp::Ge),
                BPF_JSET => jmp(JmpOp::Set),
                _ => Err(OpcodeRejection::Unknown),
            },
            c if is_socket_only_load(c) => Err(OpcodeRejection::NotForSeccomp),
            _ => Err(OpcodeRejection::Unknown),
        }
    }
}

/// Loads `chk_code_allowed` knows but `seccomp_check_filter` refuses.
fn is_socket_only_load(code: u16) -> bool {
    [
        BPF_LD | BPF_H | BPF_ABS,
        BPF_LD | BPF_B | BPF_ABS,
        BPF_LD | BPF_W | BPF_IND,
        BPF_LD | BPF_H | BPF_IND,
        BPF_LD | BPF_B | BPF_IND,
        BPF_LDX | BPF_B | BPF_MSH,
    ]
    .contains(&code)
}

/// Why the kernel would refuse a program (`seccomp()` fails with EINVAL).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum InterpError {
    #[error("a seccomp filter needs at least one instruction")]
    Empty,
    #[error("{0} instructions; the kernel accepts at most {MAX_INSNS}")]
    TooLong(usize),
    #[error("instruction {pc}: unknown opcode {code:#06x}")]
    UnknownOpcode { pc: usize, code: u16 },
    #[error("instruction {pc}: opcode {code:#06x} is classic BPF but not allowed in seccomp filters")]
    NotForSeccomp { pc: usize, code: u16 },
    #[error("instruction {pc}: load from offset {offset} is outside struct seccomp_data or not 4-byte aligned")]
    BadLoadOffset { pc: usize, offset: u32 },
    #[error("instruction {pc}: division by the constant zero")]
    DivisionByZero { pc: usize },
    #[error("instruction {pc}: shift by {k}; constant shifts must be below 32")]
    ShiftTooLarge { pc: usize, k: u32 },
    #[error("instruction {pc}: scratch memory M[{k}] does not exist (M[0..16])")]
    BadScratchIndex { pc: usize, k: u32 },
    #[error("instruction {pc}: jump past the end of the program")]
    JumpOutOfRange { pc: usize },
    #[error("the last instruction must be a return")]
    NoFinalReturn,
    #[error("instruction {pc}: reads M[{k}], which is not written on every path to it")]
    UninitialisedScratch { pc: usize, k: u32 },
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// A program the kernel's checks accept: the only thing [`Program::run`] runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    insns: Vec<Insn>,
    ops: Vec<Op>,
}

impl Program {
    /// Check a program the way `seccomp(SECCOMP_SET_MODE_FILTER)` does.
    pub fn new(insns: Vec<Insn>) -> Result<Program, InterpError> {
        let ops = check_ops(&insns)?;
        Ok(Program { insns, ops })
    }

    /// Decode and check raw `struct sock_filter[]` bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Program, InterpError> {
        Program::new(super::decode(bytes)?)
    }

    pub fn insns(&self) -> &[Insn] {
        &self.insns
    }

    /// The decoded instructions, one per [`Insn`].
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Run the filter on one system call. Cannot fail: every way a classic program
    /// can go wrong at run time was excluded by the checks.
    pub fn run(&self, data: &SeccompData) -> Outcome {
        let mut a: u32 = 0;
        let mut x: u32 = 0;
        let mut mem = [0u32; MEM_WORDS];
        let mut path = Vec::new();
        let mut pc = 0;
        loop {
            path.push(pc);
            let mut next = pc + 1;
            match self.ops[pc] {
                Op::LdAbs(k) => a = data.word_at(k),
                Op::LdLen => a = SECCOMP_DATA_SIZE,
                Op::LdxLen => x = SECCOMP_DATA_SIZE,
                Op::LdImm(k) => a = k,
                Op::LdxImm(k) => x = k,
                Op::LdMem(k) => a = mem[k as usize],
                Op::LdxMem(k) => x = mem[k as usize],
                Op::St(k) => mem[k as usize] = a,
                Op::Stx(k) => mem[k as usize] = x,
                Op::Tax => x = a,
                Op::Txa => a = x,
                Op::Neg => a = a.wrapping_neg(),
                Op::Alu(op, src) => {
                    let v = match src {
                        Src::K(k) => k,
                        Src::X => x,
                    };
                    a = match op {
                        AluOp::Add => a.wrapping_add(v),
                        AluOp::Sub => a.wrapping_sub(v),
                        AluOp::Mul => a.wrapping_mul(v),
                        // The kernel's translation returns 0 when X is zero; a
                        // constant zero divisor was refused by the checks.
                        AluOp::Div => match a.checked_div(v) {
                            Some(q) => q,
                            None => return Outcome { ret: 0, path },
                        },
                        AluOp::And => a & v,
                        AluOp::Or => a | v,
                        AluOp::Xor => a ^ v,
                        AluOp::Lsh => a << (v & 31),
                        AluOp::Rsh => a >> (v & 31),
                    };
                }
                Op::Ja(k) => next = pc + 1 + k as usize,
                Op::Jmp { op, src, jt, jf } => {
                    let v = match src {
                        Src::K(k) => k,
                        Src::X => x,
                    };
                    let taken = match op {
                        JmpOp::Eq => a == v,
                        JmpOp::Gt => a > v,
                        JmpOp::Ge => a >= v,
                        JmpOp::Set => a & v != 0,
                    };
                    next = pc + 1 + usize::from(if taken { jt } else { jf });
                }
                Op::RetK(k) => return Outcome { ret: k, path },
                Op::RetA => return Outcome { ret: a, path },
            }
            pc = next;
        }
    }
}

/// Check a program as the kernel does; `Ok` means `seccomp()` would accept it.
pub fn check(program: &[Insn]) -> Result<(), InterpError> {
    check_ops(program).map(drop)
}

/// Check `program` and run it on `data`.
pub fn run(program: &[Insn], data: &SeccompData) -> Result<Outcome, InterpError> {
    Ok(Program::new(program.to_vec())?.run(data))
}

fn check_ops(program: &[Insn]) -> Result<Vec<Op>, InterpError> {
    // bpf_check_basics_ok
    if program.is_empty() {
        return Err(InterpError::Empty);
    }
    if program.len() > MAX_INSNS {
        return Err(InterpError::TooLong(program.len()));
    }
    let len = program.len();
    let mut ops = Vec::with_capacity(len);
    for (pc, &insn) in program.iter().enumerate() {
        let op = Op::decode(insn).map_err(|why| match why {
            OpcodeRejection::Unknown => InterpError::UnknownOpcode { pc, code: insn.code },
            OpcodeRejection::NotForSeccomp => InterpError::NotForSeccomp { pc, code: insn.code },
        })?;
        let in_range = |offset: usize| pc + 1 + offset < len;
        match op {
            Op::LdAbs(k) if k >= SECCOMP_DATA_SIZE || !k.is_multiple_of(4) => {
                return Err(InterpError::BadLoadOffset { pc, offset: k });
            }
            Op::Alu(AluOp::Div, Src::K(0)) => return Err(InterpError::DivisionByZero { pc }),
            Op::Alu(AluOp::Lsh | AluOp::Rsh, Src::K(k)) if k >= 32 => {
                return Err(InterpError::ShiftTooLarge { pc, k });
            }
            Op::LdMem(k) | Op::LdxMem(k) | Op::St(k) | Op::Stx(k) if k as usize >= MEM_WORDS => {
                return Err(InterpError::BadScratchIndex { pc, k });
            }
            Op::Ja(k) if !in_range(k as usize) => return Err(InterpError::JumpOutOfRange { pc }),
            Op::Jmp { jt, jf, .. } if !in_range(jt.into()) || !in_range(jf.into()) => {
                return Err(InterpError::JumpOutOfRange { pc });
            }
            _ => {}
        }
        ops.push(op);
    }
    if !matches!(ops[len - 1], Op::RetK(_) | Op::RetA) {
        return Err(InterpError::NoFinalReturn);
    }
    check_load_and_stores(&ops)?;
    Ok(ops)
}

/// The kernel's `check_load_and_stores`, statement for statement: one bit per scratch
/// word, "written on every path so far". A jump intersects the set into each target
/// and resets the running set to "all" (the next instruction is reached only through
/// jumps, whose sets the `masks` carry). A return does *not* reset it, so the kernel
/// also intersects the set from before a return into the instruction after it: that
/// can only refuse more programs, and this mirrors it.
fn check_load_and_stores(ops: &[Op]) -> Result<(), InterpError> {
    let mut masks = vec![u16::MAX; ops.len()];
    let mut valid: u16 = 0;
    for (pc, op) in ops.iter().enumerate() {
        valid &= masks[pc];
        match *op {
            Op::St(k) | Op::Stx(k) => valid |= 1 << k,
            Op::LdMem(k) | Op::LdxMem(k) if valid & (1 << k) == 0 => {
                return Err(InterpError::UninitialisedScratch { pc, k });
            }
            Op::Ja(k) => {
                masks[pc + 1 + k as usize] &= valid;
                valid = u16::MAX;
            }
            Op::Jmp { jt, jf, .. } => {
                masks[pc + 1 + usize::from(jt)] &= valid;
                masks[pc + 1 + usize::from(jf)] &= valid;
                valid = u16::MAX;
            }
            _ => {}
        }
    }
    Ok(())
}

/// What a run returned, and how it got there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The raw 32-bit return value.
    pub ret: u32,
    /// Indices of the executed instructions, in order.
    pub path: Vec<usize>,
}

impl Outcome {
    pub fn action(&self) -> RetAction {
        RetAction::from_ret(self.ret)
    }
}

/// A filter's return value as `__seccomp_filter` reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetAction {
    KillProcess,
    KillThread,
    /// SIGSYS with `si_errno` set to the data.
    Trap(u16),
    /// The data as returned in the filter. The caller sees `-min(data, MAX_ERRNO)`:
    /// see [`RetAction::errno_seen`].
    Errno(u16),
    UserNotif,
    Trace(u16),
    Log,
    Allow,
    /// An action value Linux does not define; it kills the process.
    Unknown(u32),
}

impl RetAction {
    /// Decode a return value: the action is `ret & SECCOMP_RET_ACTION_FULL`, the data
    /// `ret & SECCOMP_RET_DATA` (used by trap, errno and trace; ignored otherwise).
    pub fn from_ret(ret: u32) -> RetAction {
        let data = (ret & SECCOMP_RET_DATA) as u16;
        match ret & SECCOMP_RET_ACTION_FULL {
            SECCOMP_RET_KILL_PROCESS => RetAction::KillProcess,
            SECCOMP_RET_KILL_THREAD => RetAction::KillThread,
            SECCOMP_RET_TRAP => RetAction::Trap(data),
            SECCOMP_RET_ERRNO => RetAction::Errno(data),
            SECCOMP_RET_USER_NOTIF => RetAction::UserNotif,
            SECCOMP_RET_TRACE => RetAction::Trace(data),
            SECCOMP_RET_LOG => RetAction::Log,
            SECCOMP_RET_ALLOW => RetAction::Allow,
            _ => RetAction::Unknown(ret),
        }
    }

    /// The errno a caller sees for an `Errno` action: the kernel caps it at `MAX_ERRNO`.
    pub fn errno_seen(self) -> Option<u16> {
        match self {
            RetAction::Errno(data) => Some(data.min(MAX_ERRNO)),
            _ => None,
        }
    }
}

impl std::fmt::Display for RetAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RetAction::KillProcess => f.write_str("kill-process"),
            RetAction::KillThread => f.write_str("kill-thread"),
            RetAction::Trap(data) => write!(f, "trap({data})"),
            RetAction::Errno(data) => write!(f, "errno({data})"),
            RetAction::UserNotif => f.write_str("user-notif"),
            RetAction::Trace(data) => write!(f, "trace({data})"),
            RetAction::Log => f.write_str("log"),
            RetAction::Allow => f.write_str("allow"),
            RetAction::Unknown(ret) => {
                write!(f, "unknown action {:#x} (kills the process)", ret & SECCOMP_RET_ACTION_FULL)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `case` labels of `seccomp_check_filter` (kernel/seccomp.c, Linux 6.12),
    /// which `bpf_check_classic` also allows.
    const SECCOMP_OPCODES: [u16; 41] = [
        0x20, 0x80, 0x81, // ld [k], ld #len, ldx #len
        0x06, 0x16, // ret #k, ret a
        0x04, 0x0c, 0x14, 0x1c, 0x24, 0x2c, 0x34, 0x3c, // add sub mul div
        0x54, 0x5c, 0x44, 0x4c, 0xa4, 0xac, 0x64, 0x6c, 0x74, 0x7c, 0x84, // and or xor lsh rsh neg
        0x00, 0x01, 0x07, 0x87, 0x60, 0x61, 0x02, 0x03, // ld/ldx #k, tax, txa, ld/ldx M[], st, stx
        0x05, 0x15, 0x1d, 0x35, 0x3d, 0x25, 0x2d, 0x45, 0x4d, // ja, jeq jge jgt jset
    ];
    /// Classic opcodes `chk_code_allowed` knows that seccomp refuses.
    const SOCKET_ONLY_OPCODES: [u16; 8] = [0x28, 0x30, 0x40, 0x48, 0x50, 0xb1, 0x94, 0x9c];

    #[test]
    fn decodes_exactly_the_kernels_seccomp_opcodes() {
        let mut accepted = Vec::new();
        let mut socket_only = Vec::new();
        for code in 0..=u16::MAX {
            match Op::decode(Insn::stmt(code, 1)) {
                Ok(_) => accepted.push(code),
                Err(OpcodeRejection::NotForSeccomp) => socket_only.push(code),
                Err(OpcodeRejection::Unknown) => {}
            }
        }
        let mut expected = SECCOMP_OPCODES.to_vec();
        expected.sort();
        assert_eq!(accepted, expected);
        let mut expected = SOCKET_ONLY_OPCODES.to_vec();
        expected.sort();
        assert_eq!(socket_only, expected);
    }

    #[test]
    fn reads_seccomp_data_words() {
        let data = SeccompData { nr: 1, arch: 2, instruction_pointer: 0x4_0000_0003, args: [0x6_0000_0005; 6] };
        assert_eq!([0, 4, 8, 12, 16, 20, 60].map(|o| data.word_at(o)), [1, 2, 3, 4, 5, 6, 6]);
    }
}
