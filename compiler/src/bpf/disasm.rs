//! A disassembler for seccomp programs, one instruction a line:
//!
//! ```text
//! 0000: ld   [4]                  ; arch
//! 0001: jeq  #0xc000003e, 0002, 0005 ; AUDIT_ARCH_X86_64
//! 0002: ld   [0]                  ; nr
//! 0003: jeq  #39, 0004, 0005      ; getpid
//! 0004: ret  #0x7fff0000          ; allow
//! 0005: ret  #0x80000000          ; kill-process
//! ```
//!
//! Jump targets are absolute instruction numbers. The comment after `;` says what a
//! load reads, what a comparison's constant means (arch, syscall name, the x32 bit,
//! the end of the syscall table) and what a return does. To know what A holds at each
//! instruction the disassembler follows the program's (forward-only) control flow,
//! so a comparison is named only when A holds the same field on every path to it, and
//! an argument load is named after its syscall only when every path to it went through
//! the same `jeq` on the number. The format is snapshotted by tests elsewhere: change
//! it deliberately.

use capsule_artifacts::Target;
use capsule_artifacts::target::{AUDIT_ARCH_AARCH64, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT};

use super::interp::{AluOp, JmpOp, MAX_ERRNO, Op, OpcodeRejection, RetAction, Src};
use super::{DecodeError, Insn, OFFSET_ARCH, OFFSET_NR, SECCOMP_DATA_SIZE};
use crate::tables::{self, SyscallDef, Table};

/// `AUDIT_ARCH_ARM` (EM_ARM | __AUDIT_ARCH_LE): the compat arch of aarch64.
const AUDIT_ARCH_ARM: u32 = 0x4000_0028;
/// Where the comment column starts, after the `0000: ` prefix.
const COMMENT_COLUMN: usize = 24;

/// What the disassembler may use to name things.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DisasmContext {
    /// The program's target, for syscall names and the table's end.
    pub target: Option<Target>,
}

impl DisasmContext {
    fn table(&self) -> Option<&'static Table> {
        match self.target? {
            Target::Macos => None,
            linux => Some(tables::table(linux)),
        }
    }

    fn syscall(&self, nr: u32) -> Option<&'static SyscallDef> {
        self.table()?.by_nr(nr)
    }
}

/// Disassemble a program. Never fails: instructions the kernel would refuse are
/// shown as raw fields with the reason.
pub fn disassemble(program: &[Insn], ctx: &DisasmContext) -> String {
    let states = flow(program);
    let mut out = String::new();
    for (pc, (&insn, state)) in program.iter().zip(&states).enumerate() {
        let state = state.unwrap_or(State::UNKNOWN);
        let (text, comment) = match Op::decode(insn) {
            Ok(op) => (op_text(op, pc), op_comment(op, state, ctx)),
            Err(why) => (
                format!(".insn code={:#06x} jt={} jf={} k={:#x}", insn.code, insn.jt, insn.jf, insn.k),
                Some(match why {
                    OpcodeRejection::Unknown => "unknown opcode".to_string(),
                    OpcodeRejection::NotForSeccomp => "not allowed in seccomp filters".to_string(),
                }),
            ),
        };
        match comment {
            Some(comment) => out.push_str(&format!("{pc:04}: {text:<COMMENT_COLUMN$} ; {comment}\n")),
            None => out.push_str(&format!("{pc:04}: {text}\n")),
        }
    }
    out
}

/// Decode raw `struct sock_filter[]` bytes and disassemble them.
pub fn disassemble_bytes(bytes: &[u8], ctx: &DisasmContext) -> Result<String, DecodeError> {
    Ok(disassemble(&super::decode(bytes)?, ctx))
}

fn op_text(op: Op, pc: usize) -> String {
    let target = |offset: usize| format!("{:04}", pc + 1 + offset);
    match op {
        Op::LdAbs(k) => format!("ld   [{k}]"),
        Op::LdLen => "ld   #len".to_string(),
        Op::LdxLen => "ldx  #len".to_string(),
        Op::LdImm(k) => format!("ld   {}", number(k)),
        Op::LdxImm(k) => format!("ldx  {}", number(k)),
        Op::LdMem(k) => format!("ld   M[{k}]"),
        Op::LdxMem(k) => format!("ldx  M[{k}]"),
        Op::St(k) => format!("st   M[{k}]"),
        Op::Stx(k) => format!("stx  M[{k}]"),
        Op::Alu(op, src) => {
            let (name, bits) = match op {
                AluOp::Add => ("add", false),
                AluOp::Sub => ("sub", false),
                AluOp::Mul => ("mul", false),
                AluOp::Div => ("div", false),
                AluOp::And => ("and", true),
                AluOp::Or => ("or", true),
                AluOp::Xor => ("xor", true),
                AluOp::Lsh => ("lsh", false),
                AluOp::Rsh => ("rsh", false),
            };
            format!("{name:<4} {}", operand(src, bits))
        }
        Op::Neg => "neg".to_string(),
        Op::Ja(k) => format!("ja   {}", target(k as usize)),
        Op::Jmp { op, src, jt, jf } => {
            let name = match op {
                JmpOp::Eq => "jeq",
                JmpOp::Gt => "jgt",
                JmpOp::Ge => "jge",
                JmpOp::Set => "jset",
            };
            let bits = op == JmpOp::Set;
            format!("{name:<4} {}, {}, {}", operand(src, bits), target(jt.into()), target(jf.into()))
        }
        Op::RetK(k) => format!("ret  #{k:#x}"),
        Op::RetA => "ret  a".to_string(),
        Op::Tax => "tax".to_string(),
        Op::Txa => "txa".to_string(),
    }
}

/// Small numbers in decimal (syscall numbers, lengths), large ones in hex.
fn number(k: u32) -> String {
    if k < 0x1000 { format!("#{k}") } else { format!("#{k:#x}") }
}

/// Masks always in hex.
fn operand(src: Src, bits: bool) -> String {
    match src {
        Src::X => "x".to_string(),
        Src::K(k) if bits => format!("#{k:#x}"),
        Src::K(k) => number(k),
    }
}

fn op_comment(op: Op, state: State, ctx: &DisasmContext) -> Option<String> {
    match op {
        Op::LdAbs(k) => Some(match Field::at(k) {
            Some(Field::Arg { index, high }) => {
                let half = if high { "high" } else { "low" };
                match state.nr.and_then(|nr| ctx.syscall(nr)) {
                    Some(def) if def.args_known => match def.args().get(usize::from(index)) {
                        Some(arg) => {
                            format!("{}.arg{index} ({}) {half}", def.name(), arg.display_name())
                        }
                        None => format!("{}.arg{index} (unused) {half}", def.name()),
                    },
                    Some(def) => format!("{}.arg{index} {half}", def.name()),
                    None => format!("arg{index} {half}"),
                }
            }
            Some(field) => field.name().to_string(),
            None => "outside seccomp_data".to_string(),
        }),
        Op::LdLen | Op::LdxLen => Some(format!("sizeof(struct seccomp_data) = {SECCOMP_DATA_SIZE}")),
        Op::Jmp { op, src: Src::K(k), .. } => match state.a {
            Value::Field(Field::Arch) if op == JmpOp::Eq => arch_name(k).map(str::to_string),
            Value::Field(Field::Nr) => nr_comment(op, k, ctx),
            _ => None,
        },
        Op::RetK(k) => Some(action_text(RetAction::from_ret(k))),
        _ => None,
    }
}

fn nr_comment(op: JmpOp, k: u32, ctx: &DisasmContext) -> Option<String> {
    let above_table = ctx.table().filter(|t| !t.syscalls.is_empty()).is_some_and(|t| match op {
        JmpOp::Gt => k == t.max_nr,
        JmpOp::Ge => Some(k) == t.max_nr.checked_add(1),
        _ => false,
    });
    if above_table {
        return Some("above table (newer-syscalls)".to_string());
    }
    if k == X32_SYSCALL_BIT && matches!(op, JmpOp::Ge | JmpOp::Set) {
        return Some("x32 bit".to_string());
    }
    let name = ctx.syscall(k)?.name();
    Some(match op {
        JmpOp::Eq => name.to_string(),
        JmpOp::Gt => format!("> {name}"),
        JmpOp::Ge => format!(">= {name}"),
        JmpOp::Set => return None,
    })
}

fn arch_name(arch: u32) -> Option<&'static str> {
    match arch {
        AUDIT_ARCH_X86_64 => Some("AUDIT_ARCH_X86_64"),
        AUDIT_ARCH_AARCH64 => Some("AUDIT_ARCH_AARCH64"),
        AUDIT_ARCH_I386 => Some("AUDIT_ARCH_I386"),
        AUDIT_ARCH_ARM => Some("AUDIT_ARCH_ARM"),
        _ => None,
    }
}

fn action_text(action: RetAction) -> String {
    match action {
        RetAction::Errno(data) => {
            let name = tables::errno_name(data).map_or_else(|| data.to_string(), str::to_string);
            if data > MAX_ERRNO { format!("errno({name}, capped at {MAX_ERRNO})") } else { format!("errno({name})") }
        }
        other => other.to_string(),
    }
}

/// A field of `struct seccomp_data`, as one 32-bit load reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Nr,
    Arch,
    InstructionPointer { high: bool },
    Arg { index: u8, high: bool },
}

impl Field {
    fn at(offset: u32) -> Option<Field> {
        if !offset.is_multiple_of(4) || offset >= SECCOMP_DATA_SIZE {
            return None;
        }
        let high = offset % 8 == 4;
        Some(match offset {
            OFFSET_NR => Field::Nr,
            OFFSET_ARCH => Field::Arch,
            8 | 12 => Field::InstructionPointer { high },
            _ => Field::Arg { index: ((offset - 16) / 8) as u8, high },
        })
    }

    fn name(self) -> &'static str {
        match self {
            Field::Nr => "nr",
            Field::Arch => "arch",
            Field::InstructionPointer { high: false } => "instruction_pointer low",
            Field::InstructionPointer { high: true } => "instruction_pointer high",
            Field::Arg { .. } => "argument",
        }
    }
}

/// What A holds before an instruction, on every path to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value {
    Unknown,
    Field(Field),
}

/// What is known before an instruction, on every path to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    a: Value,
    /// The syscall number, when every path compared it equal to a constant.
    nr: Option<u32>,
}

impl State {
    const UNKNOWN: State = State { a: Value::Unknown, nr: None };

    fn merge(self, other: State) -> State {
        State {
            a: if self.a == other.a { self.a } else { Value::Unknown },
            nr: if self.nr == other.nr { self.nr } else { None },
        }
    }
}

/// The state before each instruction; `None` for instructions no path reaches. Jumps
/// only go forward, so one pass in order sees every predecessor before its target.
fn flow(program: &[Insn]) -> Vec<Option<State>> {
    let mut states: Vec<Option<State>> = vec![None; program.len()];
    if let Some(first) = states.first_mut() {
        *first = Some(State::UNKNOWN);
    }
    for pc in 0..program.len() {
        let Some(state) = states[pc] else { continue };
        let mut reach = |offset: usize, state: State| {
            if let Some(slot) = states.get_mut(pc + 1 + offset) {
                *slot = Some(slot.map_or(state, |s| s.merge(state)));
            }
        };
        let Ok(op) = Op::decode(program[pc]) else {
            continue;
        };
        let after = |a: Value| State { a, ..state };
        match op {
            Op::RetK(_) | Op::RetA => {}
            Op::Ja(k) => reach(k as usize, state),
            Op::Jmp { op, src, jt, jf } => {
                let mut taken = state;
                if let (JmpOp::Eq, Src::K(k), Value::Field(Field::Nr)) = (op, src, state.a)
                    && jt != jf
                {
                    taken.nr = Some(k);
                }
                reach(jt.into(), taken);
                reach(jf.into(), state);
            }
            Op::LdAbs(k) => reach(0, after(Field::at(k).map_or(Value::Unknown, Value::Field))),
            Op::St(_) | Op::Stx(_) | Op::LdxImm(_) | Op::LdxMem(_) | Op::LdxLen | Op::Tax => reach(0, state),
            Op::LdLen | Op::LdImm(_) | Op::LdMem(_) | Op::Alu(..) | Op::Neg | Op::Txa => {
                reach(0, after(Value::Unknown))
            }
        }
    }
    states
}
