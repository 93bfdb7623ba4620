//! A small assembler for classic BPF: instructions with symbolic forward labels,
//! layout, and JA trampolines for conditional jumps longer than 255.
//!
//! Code that no jump reaches is not emitted. It also tracks which `seccomp_data` word the accumulator holds on every path, so
//! the code generator can skip a load when every path already loaded that word.

use crate::bpf::{BPF_ABS, BPF_ALU, BPF_AND, BPF_JA, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W, Insn};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Label(u32);

#[derive(Debug, Clone)]
enum Item {
    Insn(Insn),
    /// A conditional jump (`BPF_JMP | op | BPF_K`).
    Jump {
        op: u16,
        k: u32,
        jt: Label,
        jf: Label,
    },
    Ja(Label),
    Bind(Label),
}

/// What the accumulator holds: a word of `seccomp_data` at this offset, or something
/// else.
type Acc = Option<u32>;

#[derive(Debug, Default)]
pub struct Asm {
    items: Vec<Item>,
    labels: u32,
    /// `None` while the current point is unreachable (after a jump or return).
    acc: Option<Acc>,
    /// The accumulator's state on every jump to a label not bound yet, merged.
    incoming: BTreeMap<Label, Acc>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AsmError {
    #[error("label {0:?} is used but never bound, or bound before a jump to it")]
    Unresolved(Label),
    #[error("label {0:?} is bound at the end of the program, with no instruction after it")]
    DanglingLabel(Label),
}

impl Asm {
    pub fn new() -> Asm {
        Asm { acc: Some(None), ..Asm::default() }
    }

    pub fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels)
    }

    /// Place `label` here: the next instruction is its target.
    pub fn bind(&mut self, label: Label) {
        let incoming = self.incoming.remove(&label);
        if incoming.is_none() && self.acc.is_none() {
            // Nothing jumps here and nothing falls through: the code that follows,
            // up to the next reachable label, is dead and is not emitted.
            return;
        }
        self.acc = match (self.acc, incoming) {
            (None, None) => None,
            (Some(a), None) | (None, Some(a)) => Some(a),
            (Some(a), Some(b)) => Some(if a == b { a } else { None }),
        };
        self.items.push(Item::Bind(label));
    }

    fn jumped_to(&mut self, label: Label) {
        let Some(acc) = self.acc else { return };
        self.incoming.entry(label).and_modify(|a| *a = if *a == acc { acc } else { None }).or_insert(acc);
    }

    /// `ld [offset]`, unless every path here already loaded it.
    pub fn load(&mut self, offset: u32) {
        if self.acc.is_some() && self.acc != Some(Some(offset)) {
            self.items.push(Item::Insn(Insn::stmt(BPF_LD | BPF_W | BPF_ABS, offset)));
            self.acc = Some(Some(offset));
        }
    }

    /// `and #mask`.
    pub fn and(&mut self, mask: u32) {
        if self.acc.is_none() {
            return;
        }
        self.items.push(Item::Insn(Insn::stmt(BPF_ALU | BPF_AND | BPF_K, mask)));
        self.acc = Some(None);
    }

    /// `ret #value`.
    pub fn ret(&mut self, value: u32) {
        if self.acc.is_none() {
            return;
        }
        self.items.push(Item::Insn(Insn::stmt(BPF_RET | BPF_K, value)));
        self.acc = None;
    }

    /// A conditional jump: `BPF_JMP | op | BPF_K` with `k`.
    pub fn jump(&mut self, op: u16, k: u32, jt: Label, jf: Label) {
        if self.acc.is_none() {
            return;
        }
        self.jumped_to(jt);
        self.jumped_to(jf);
        self.items.push(Item::Jump { op, k, jt, jf });
        self.acc = None;
    }

    pub fn ja(&mut self, target: Label) {
        if self.acc.is_none() {
            return;
        }
        self.jumped_to(target);
        self.items.push(Item::Ja(target));
        self.acc = None;
    }

    /// Lay the program out: drop jumps to the next instruction, turn a `ja` to a
    /// return into that return, and give every conditional jump longer than 255 a
    /// `ja` trampoline right after it.
    pub fn finish(self) -> Result<Vec<Insn>, AsmError> {
        let mut items = self.items;
        let rets = returns_at_labels(&items);
        items = items
            .into_iter()
            .map(|item| match item {
                Item::Ja(target) => rets.get(&target).map_or(item, |&ret| Item::Insn(ret)),
                other => other,
            })
            .collect();
        let mut next_label = self.labels;
        drop_jumps_to_next(&mut items);
        loop {
            let positions = positions(&items)?;
            let far: Vec<(usize, bool, bool)> = items
                .iter()
                .enumerate()
                .filter_map(|(at, item)| {
                    let Item::Jump { jt, jf, .. } = *item else {
                        return None;
                    };
                    let from = positions.of_item[at];
                    let long = |l: Label| positions.of_label[&l] - (from + 1) > u8::MAX as usize;
                    (long(jt) || long(jf)).then(|| (at, long(jt), long(jf)))
                })
                .collect();
            if far.is_empty() {
                return emit(&items, &positions);
            }
            // From the end, so the indices of the jumps still to patch stay valid.
            for &(at, jt_far, jf_far) in far.iter().rev() {
                let Item::Jump { op, k, jt, jf } = items[at].clone() else { unreachable!("found a jump") };
                let mut trampolines = Vec::new();
                let mut via = |target: Label, far: bool| {
                    if !far {
                        return target;
                    }
                    next_label += 1;
                    let hop = Label(next_label);
                    // A far return is simply repeated; any other target gets a `ja`.
                    let hop_insn = rets.get(&target).map_or(Item::Ja(target), |&ret| Item::Insn(ret));
                    trampolines.extend([Item::Bind(hop), hop_insn]);
                    hop
                };
                let (jt, jf) = (via(jt, jt_far), via(jf, jf_far));
                items[at] = Item::Jump { op, k, jt, jf };
                items.splice(at + 1..at + 1, trampolines);
            }
        }
    }
}

/// The return instruction each label points at, if it points at one.
fn returns_at_labels(items: &[Item]) -> BTreeMap<Label, Insn> {
    let mut rets = BTreeMap::new();
    let mut pending = Vec::new();
    for item in items {
        match item {
            Item::Bind(l) => pending.push(*l),
            Item::Insn(insn) if insn.code == BPF_RET | BPF_K => rets.extend(pending.drain(..).map(|l| (l, *insn))),
            _ => pending.clear(),
        }
    }
    rets
}

/// Remove `ja L` when `L` is bound before the next instruction.
fn drop_jumps_to_next(items: &mut Vec<Item>) {
    let mut keep = vec![true; items.len()];
    for (at, item) in items.iter().enumerate() {
        if let Item::Ja(target) = item {
            let mut rest = items[at + 1..].iter();
            keep[at] = !rest
                .by_ref()
                .take_while(|i| matches!(i, Item::Bind(_)))
                .any(|i| matches!(i, Item::Bind(l) if l == target));
        }
    }
    let mut flags = keep.into_iter();
    items.retain(|_| flags.next().expect("one flag per item"));
}

struct Positions {
    /// The instruction index of each item (of the next instruction, for a `Bind`).
    of_item: Vec<usize>,
    of_label: BTreeMap<Label, usize>,
}

fn positions(items: &[Item]) -> Result<Positions, AsmError> {
    let mut of_item = Vec::with_capacity(items.len());
    let mut of_label = BTreeMap::new();
    let mut pc = 0;
    for item in items {
        of_item.push(pc);
        match item {
            Item::Bind(l) => {
                of_label.insert(*l, pc);
            }
            _ => pc += 1,
        }
    }
    for (at, item) in items.iter().enumerate() {
        let targets = match *item {
            Item::Jump { jt, jf, .. } => vec![jt, jf],
            Item::Ja(t) => vec![t],
            Item::Bind(l) if of_label[&l] == pc => return Err(AsmError::DanglingLabel(l)),
            _ => vec![],
        };
        for t in targets {
            match of_label.get(&t) {
                Some(&p) if p > of_item[at] => {}
                _ => return Err(AsmError::Unresolved(t)),
            }
        }
    }
    Ok(Positions { of_item, of_label })
}

fn emit(items: &[Item], positions: &Positions) -> Result<Vec<Insn>, AsmError> {
    let mut out = Vec::new();
    for (at, item) in items.iter().enumerate() {
        let offset = |l: Label| positions.of_label[&l] - (positions.of_item[at] + 1);
        match *item {
            Item::Insn(insn) => out.push(insn),
            Item::Jump { op, k, jt, jf } => {
                let (t, f) = (offset(jt), offset(jf));
                out.push(Insn::jump(BPF_JMP | op | BPF_K, k, t as u8, f as u8));
            }
            Item::Ja(l) => out.push(Insn::stmt(BPF_JMP | BPF_JA, offset(l) as u32)),
            Item::Bind(_) => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::{BPF_JEQ, SECCOMP_RET_ALLOW};

    #[test]
    fn long_jumps_get_trampolines() {
        let mut asm = Asm::new();
        let (near, far) = (asm.label(), asm.label());
        asm.load(0);
        asm.jump(BPF_JEQ, 7, far, near);
        asm.bind(near);
        // 300 reachable instructions between the jump and its far target.
        for i in 0..300 {
            asm.load(if i % 2 == 0 { 16 } else { 20 });
        }
        asm.ret(0);
        asm.bind(far);
        asm.ret(SECCOMP_RET_ALLOW);
        let program = asm.finish().expect("assembles");
        assert_eq!(program.len(), 1 + 1 + 1 + 300 + 1 + 1);
        assert_eq!((program[1].jt, program[1].jf), (0, 1));
        // The far target is a return, so the trampoline is that return itself.
        assert_eq!(program[2], Insn::stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
        assert_eq!(program[304], Insn::stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    }

    #[test]
    fn long_jumps_to_code_get_ja_trampolines() {
        let mut asm = Asm::new();
        let (near, far) = (asm.label(), asm.label());
        asm.load(0);
        asm.jump(BPF_JEQ, 7, far, near);
        asm.bind(near);
        // 300 reachable instructions between the jump and its far target.
        for i in 0..300 {
            asm.load(if i % 2 == 0 { 16 } else { 20 });
        }
        asm.ret(0);
        asm.bind(far);
        asm.load(24);
        asm.ret(SECCOMP_RET_ALLOW);
        let program = asm.finish().expect("assembles");
        assert_eq!(program.len(), 1 + 1 + 1 + 300 + 1 + 2);
        assert_eq!((program[1].jt, program[1].jf), (0, 1));
        assert_eq!(program[2], Insn::stmt(BPF_JMP | BPF_JA, 301));
        assert_eq!(program[304], Insn::stmt(BPF_LD | BPF_W | BPF_ABS, 24));
    }

    #[test]
    fn a_load_every_path_made_is_skipped() {
        let mut asm = Asm::new();
        let (a, b, join, out) = (asm.label(), asm.label(), asm.label(), asm.label());
        asm.load(16);
        asm.jump(BPF_JEQ, 1, a, b);
        asm.bind(a);
        asm.ja(join);
        asm.bind(b);
        asm.load(16);
        asm.ja(join);
        asm.bind(join);
        asm.load(16);
        asm.jump(BPF_JEQ, 2, out, out);
        asm.bind(out);
        asm.ret(0);
        let program = asm.finish().expect("assembles");
        let loads = program.iter().filter(|i| i.code == BPF_LD | BPF_W | BPF_ABS).count();
        assert_eq!(loads, 1);
    }
}
