//! Lowering: the only step that knows both the AST and the IR. Resolves syscall
//! names and groups per target, argument names and widths from the kernel's
//! signatures, constants per target, and deny actions; reports what it cannot
//! resolve with the span it came from.

use super::ast::*;
use super::suggest::did_you_mean;
use crate::diagnostic::{Code, Diagnostic};
use crate::ir::{Action, Arg, Cond, Origin, Policy, Rule, RuleKind, Span, SyscallPolicy, SyscallRules, Test, Width};
use crate::tables::{self, SyscallDef, Table};
use crate::valid::{low_bits, width_of_bits};
use capsule_artifacts::launch::{self, LandlockMode, Record};
use capsule_artifacts::notify::DESTINATION_SYSCALLS;
use capsule_artifacts::{LaunchSettings, Target};
use capsule_grammar as g;
use std::collections::{BTreeMap, BTreeSet};

const EPERM: u16 = 1;
const ENOSYS: u16 = 38;

pub fn lower(ast: &PolicyAst, diags: &mut Vec<Diagnostic>) -> Option<Policy> {
    let mut cx = Lower {
        diags: Vec::new(),
        constancy_budget: CONSTANCY_BUDGET,
        lowered: BTreeMap::new(),
        condition: (0, 0),
        constancy: BTreeMap::new(),
        constancy_memo: BTreeMap::new(),
    };
    let policy = cx.policy(ast);
    cx.constancy_warnings();
    cx.diags.extend(proxy_warnings(ast, &policy));
    // The same problem seen on two targets is one diagnostic.
    let mut seen = BTreeSet::new();
    for d in cx.diags {
        if seen.insert((d.code, d.primary.span.start, d.primary.span.end, d.message.clone())) {
            diags.push(d);
        }
    }
    if diags.iter().any(Diagnostic::is_error) { None } else { Some(policy) }
}

struct Lower {
    diags: Vec<Diagnostic>,
    /// Evaluation steps left for whole-condition constancy over the whole policy, so
    /// that a hostile file cannot make the check slow; past it the lint is skipped.
    constancy_budget: u64,
    /// Per condition (by span): how many targets lowered it.
    lowered: BTreeMap<(usize, usize), u32>,
    /// The span of the condition being lowered.
    condition: (usize, usize),
    /// Per span of a test or compound condition: its warning on each target where it is
    /// constant. Constants differ between targets (`O_DIRECTORY`), so a warning is given
    /// only when every target that lowered the condition gives it.
    constancy: BTreeMap<(usize, usize), Verdicts>,
    /// Whole-condition answers by lowered condition: most lower alike on every target.
    constancy_memo: BTreeMap<Cond, Option<bool>>,
}

struct Verdicts {
    /// The span of the condition the test is in, or the condition is.
    condition: (usize, usize),
    /// A compound condition's, rather than one test's.
    whole: bool,
    warnings: Vec<Diagnostic>,
}

/// A few tenths of a second of whole-condition analysis per policy at most.
const CONSTANCY_BUDGET: u64 = 1 << 26;

impl Lower {
    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn policy(&mut self, ast: &PolicyAst) -> Policy {
        match &ast.version {
            None => self.push(
                Diagnostic::new(
                    Code::MissingVersion,
                    ast.span.start..ast.span.start,
                    "the policy does not say `version: 1`",
                )
                .label("expected `version: 1` here")
                .help("add `version: 1` as the first line, so a future format cannot be misread as this one"),
            ),
            Some(v) if v.value != 1 => self.push(
                Diagnostic::new(
                    Code::UnsupportedVersion,
                    v.span.clone(),
                    format!("policy version {} is not supported", v.value),
                )
                .label("this compiler reads version 1")
                .help("write `version: 1`, or use a compiler that knows this version"),
            ),
            Some(_) => {}
        }

        let default = self.top_action(&ast.default, Action::Errno(EPERM), "default");
        if default == Action::Allow {
            let span = ast.default.as_ref().map(|d| d.span.clone()).unwrap_or_default();
            self.push(
                Diagnostic::new(Code::DefaultAllow, span, "`default: allow` makes this a deny-list policy")
                    .label("every syscall not denied below is allowed, including ones added by future kernels' numbers inside the table")
                    .help("prefer `default: errno(EPERM)` and list what the tool needs under `allow:`"),
            );
        }
        let newer_syscalls = self.top_action(&ast.newer_syscalls, Action::Errno(ENOSYS), "newer-syscalls");
        let foreign_arch = self.top_action(&ast.foreign_arch, Action::KillProcess, "foreign-arch");

        let targets: Vec<Target> = match &ast.targets {
            None => Target::ALL.to_vec(),
            Some(ts) => Target::ALL.into_iter().filter(|t| ts.iter().any(|s| s.value == *t)).collect(),
        };
        let linux: Vec<Target> = targets.iter().copied().filter(|t| t.is_linux()).collect();
        if linux.is_empty() && !ast.syscalls.rules.is_empty() {
            let span = ast.syscalls.rules[0].span.clone();
            self.push(
                Diagnostic::new(Code::NoLinuxTarget, span, "syscall rules, but no Linux target")
                    .label("these rules compile to nothing")
                    .help("add linux-x86_64 or linux-aarch64 to `targets:`"),
            );
        }

        let syscalls = linux.iter().map(|&t| self.syscall_policy(ast, t, &linux, default)).collect();
        self.check_allowed_and_denied(ast, &linux);

        Policy {
            name: ast.name.as_ref().map_or_else(|| "unnamed".to_owned(), |n| n.value.clone()),
            description: ast.description.as_ref().map(|d| d.value.clone()),
            default,
            newer_syscalls,
            foreign_arch,
            targets,
            syscalls,
            launch: self.launch(ast),
        }
    }

    fn top_action(&mut self, action: &Option<Spanned<ActionAst>>, fallback: Action, what: &str) -> Action {
        let Some(a) = action else { return fallback };
        let lowered = lower_action(&a.value);
        if lowered == Action::Errno(0) {
            self.push(
                Diagnostic::new(
                    Code::ErrnoZero,
                    a.span.clone(),
                    format!("`{what}: errno(0)` makes denied calls look successful"),
                )
                .label("the call does not run, but returns 0")
                .help("use a real errno such as errno(EPERM), or `allow` if the call should run"),
            );
        }
        lowered
    }

    fn syscall_policy(&mut self, ast: &PolicyAst, target: Target, linux: &[Target], default: Action) -> SyscallPolicy {
        let table = tables::table(target);
        let mut syscalls: BTreeMap<u32, SyscallRules> = BTreeMap::new();
        for rule in &ast.syscalls.rules {
            let kind = match rule.section {
                Section::Allow => RuleKind::Allow,
                Section::Audit => RuleKind::Audit,
                Section::Deny => RuleKind::Deny(self.deny_action(rule, default)),
            };
            let (defs, group): (Vec<&'static SyscallDef>, Option<String>) = match &rule.subject {
                Subject::Syscall(name) => (self.resolve_syscall(name, table, linux).into_iter().collect(), None),
                Subject::Group(name) => {
                    if crate::groups::group(&name.value).is_none() {
                        self.unknown_group(name);
                        continue;
                    }
                    if let Some(when) = &rule.when {
                        self.push(
                            Diagnostic::new(
                                Code::ConditionOnGroup,
                                when.span.clone(),
                                format!("a condition on the group `@{}`", name.value),
                            )
                            .label("arguments differ from one syscall to the next")
                            .help("write the condition on each syscall that needs it"),
                        );
                        continue;
                    }
                    (crate::groups::expand(&name.value, target), Some(name.value.clone()))
                }
            };
            for def in defs {
                let cond = match &rule.when {
                    None => Cond::True,
                    Some(when) => match self.condition(when, def, table) {
                        Some(c) => c,
                        None => continue,
                    },
                };
                let entry = syscalls.entry(def.nr).or_insert_with(|| SyscallRules {
                    name: def.name(),
                    nr: def.nr,
                    rules: Vec::new(),
                });
                entry.rules.push(Rule {
                    kind,
                    cond,
                    origin: Origin { span: rule.span.clone(), group: group.clone(), implied_by: None },
                });
            }
        }
        match &ast.filesystem.setid {
            Some(setid) if setid.value => {}
            written => deny_setid(table, default, written.as_ref().map_or(0..0, |s| s.span.clone()), &mut syscalls),
        }
        let net = &ast.network;
        if net.domains.is_some() || net.routes.is_some() {
            audit_destinations(table, default, net.proxy_span(), &mut syscalls);
        }
        SyscallPolicy { target, syscalls }
    }

    fn deny_action(&mut self, rule: &RuleAst, default: Action) -> Action {
        match &rule.action {
            Some(a) if a.value == ActionAst::Allow => {
                self.push(
                    Diagnostic::new(Code::BadAction, a.span.clone(), "a deny rule cannot allow")
                        .label("`allow` here")
                        .help("move the rule under `allow:`"),
                );
                Action::Errno(EPERM)
            }
            Some(a) => {
                let action = lower_action(&a.value);
                if action == Action::Errno(0) {
                    self.push(
                        Diagnostic::new(
                            Code::ErrnoZero,
                            a.span.clone(),
                            "errno(0) makes the denied call look successful",
                        )
                        .label("the call does not run, but returns 0")
                        .help("use a real errno such as errno(EPERM), or allow the call"),
                    );
                }
                action
            }
            // A bare deny never silently allows: under an allowing default it is EPERM.
            None if default.lets_call_run() => Action::Errno(EPERM),
            None => default,
        }
    }

    fn resolve_syscall(
        &mut self,
        name: &Spanned<String>,
        table: &'static Table,
        linux: &[Target],
    ) -> Option<&'static SyscallDef> {
        if let Some(def) = table.by_name(&name.value) {
            return Some(def);
        }
        let has: Vec<Target> =
            Target::LINUX.into_iter().filter(|t| tables::table(*t).by_name(&name.value).is_some()).collect();
        if has.is_empty() {
            let mut d =
                Diagnostic::new(Code::UnknownSyscall, name.span.clone(), format!("unknown syscall `{}`", name.value))
                    .label("no such syscall on any target");
            if let Some(s) = did_you_mean(&name.value, tables::all_syscall_names()) {
                d = d.help(format!("did you mean `{s}`?"));
            }
            self.push(d);
        } else if linux.iter().all(|t| !has.contains(t)) {
            let on: Vec<&str> = has.iter().map(|t| t.name()).collect();
            self.push(
                Diagnostic::new(
                    Code::NoTargetHasSyscall,
                    name.span.clone(),
                    format!("`{}` exists on none of this policy's targets", name.value),
                )
                .label(format!("only on {}", on.join(", ")))
                .help("add that target to `targets:` or remove the rule"),
            );
        } else {
            let on: Vec<&str> = has.iter().filter(|t| linux.contains(t)).map(|t| t.name()).collect();
            self.push(
                Diagnostic::new(
                    Code::SyscallMissingOnTarget,
                    name.span.clone(),
                    format!("`{}` does not exist on {}", name.value, table.target),
                )
                .label(format!("compiled for {} only", on.join(", ")))
                .note(format!("{} programs use a newer syscall for this, which needs its own rule", table.target)),
            );
        }
        None
    }

    fn unknown_group(&mut self, name: &Spanned<String>) {
        let mut d = Diagnostic::new(Code::UnknownGroup, name.span.clone(), format!("unknown group `@{}`", name.value))
            .label("no such group");
        d = match did_you_mean(&name.value, crate::groups::groups().iter().map(|g| g.name)) {
            Some(s) => d.help(format!("did you mean `@{s}`? (`capsulec groups` lists them)")),
            None => d.help("`capsulec groups` lists the groups"),
        };
        self.push(d);
    }

    fn condition(&mut self, when: &CondAst, def: &SyscallDef, table: &Table) -> Option<Cond> {
        let mut ok = true;
        let span = when.file_span(when.expr.span());
        self.condition = (span.start, span.end);
        *self.lowered.entry(self.condition).or_default() += 1;
        let cond = self.expr(&when.expr, when, def, table, &mut ok);
        // A single test was judged on its own; a compound condition can be constant
        // though none of its tests is (`a == 1 && a == 2`).
        if ok
            && matches!(when.expr, g::Expr::Or(..) | g::Expr::And(..) | g::Expr::Not(..))
            && let Some(always) = self.constant_truth(&cond)
        {
            self.note_constant(&span, true, constant_condition(when, always));
        }
        ok.then_some(cond)
    }

    fn constant_truth(&mut self, cond: &Cond) -> Option<bool> {
        if let Some(&known) = self.constancy_memo.get(cond) {
            return known;
        }
        let truth = super::constant_cond::constant_truth_within(cond, &mut self.constancy_budget);
        self.constancy_memo.insert(cond.clone(), truth);
        truth
    }

    /// Notes that the test or condition at `span` is constant on the target being lowered.
    fn note_constant(&mut self, span: &std::ops::Range<usize>, whole: bool, warning: Diagnostic) {
        let condition = self.condition;
        let verdicts =
            self.constancy.entry((span.start, span.end)).or_insert(Verdicts { condition, whole, warnings: Vec::new() });
        verdicts.warnings.push(warning);
    }

    /// The constancy warnings every lowering target agrees on. A whole condition's is
    /// left out when one of its tests is reported: that test already says why.
    fn constancy_warnings(&mut self) {
        let mut tests: Vec<(usize, usize)> = Vec::new();
        let mut wholes = Vec::new();
        for (span, verdicts) in std::mem::take(&mut self.constancy) {
            let targets = self.lowered.get(&verdicts.condition).copied().unwrap_or(0);
            let first = verdicts.warnings[0].code;
            let agreed = verdicts.warnings.len() as u32 == targets && verdicts.warnings.iter().all(|d| d.code == first);
            let Some(warning) = verdicts.warnings.into_iter().next().filter(|_| agreed) else { continue };
            if verdicts.whole {
                wholes.push((span, warning));
            } else {
                tests.push(span);
                self.push(warning);
            }
        }
        for ((start, end), warning) in wholes {
            if !tests.iter().any(|&(s, e)| start <= s && e <= end) {
                self.push(warning);
            }
        }
    }

    fn expr(&mut self, e: &g::Expr, when: &CondAst, def: &SyscallDef, table: &Table, ok: &mut bool) -> Cond {
        match e {
            g::Expr::Or(items, _) => Cond::Or(items.iter().map(|i| self.expr(i, when, def, table, ok)).collect()),
            g::Expr::And(items, _) => Cond::And(items.iter().map(|i| self.expr(i, when, def, table, ok)).collect()),
            g::Expr::Not(inner, _) => Cond::Not(Box::new(self.expr(inner, when, def, table, ok))),
            g::Expr::Test(t) => match self.test(t, when, def, table) {
                Some(c) => c,
                None => {
                    *ok = false;
                    Cond::False
                }
            },
        }
    }

    fn test(&mut self, t: &g::Test, when: &CondAst, def: &SyscallDef, table: &Table) -> Option<Cond> {
        let (arg, bits) = self.argument(&t.arg, when, def)?;
        let value = |v: &g::Value, this: &mut Self| this.value(v, bits, when, table);
        let test = match &t.op {
            g::TestOp::Cmp(op, v) => {
                let v = value(v, self)?;
                match op {
                    g::CmpOp::Eq => Test::Eq(v),
                    g::CmpOp::Ne => Test::Ne(v),
                    g::CmpOp::Lt => Test::Lt(v),
                    g::CmpOp::Le => Test::Le(v),
                    g::CmpOp::Gt => Test::Gt(v),
                    g::CmpOp::Ge => Test::Ge(v),
                }
            }
            g::TestOp::Masked { mask, op, value: v } => {
                let (mask, v) = (value(mask, self)?, value(v, self)?);
                match op {
                    g::EqOp::Eq => Test::MaskedEq { mask, value: v },
                    g::EqOp::Ne => Test::MaskedNe { mask, value: v },
                }
            }
            g::TestOp::In(vs) | g::TestOp::NotIn(vs) => {
                let mut set = Vec::new();
                for v in vs {
                    set.push(value(v, self)?);
                }
                set.sort_unstable();
                set.dedup();
                if matches!(t.op, g::TestOp::In(_)) { Test::In(set) } else { Test::NotIn(set) }
            }
        };
        let span = when.file_span(t.span);
        let verdict = triviality(&test, low_bits(bits)).map(|always| {
            let (code, what) =
                if always { (Code::AlwaysTrue, "always true") } else { (Code::AlwaysFalse, "always false") };
            Diagnostic::new(code, span.clone(), format!("this test is {what} for a {bits}-bit argument"))
                .label(what)
                .help(if always {
                    "drop the condition, or fix the value"
                } else {
                    "the rule can never apply: fix the value or remove the rule"
                })
        });
        if let Some(warning) = verdict {
            self.note_constant(&span, false, warning);
        }
        Some(if bits < arg.width.bits() { on_low_bits(arg, low_bits(bits), test) } else { Cond::Test { arg, test } })
    }

    /// The argument, and how many of its bits the kernel reads: 16 (`umode_t`), 32 or 64.
    fn argument(&mut self, ident: &g::Ident, when: &CondAst, def: &SyscallDef) -> Option<(Arg, u32)> {
        let span = when.file_span(ident.span);
        let index = match ident.name.strip_prefix("arg").and_then(|n| n.parse::<u8>().ok()) {
            Some(i) if i < 6 => Some(i as usize),
            _ => def
                .args()
                .iter()
                .position(|a| a.kernel_name() == ident.name || a.man_name() == Some(ident.name.as_str())),
        };
        let Some(index) = index else {
            let names: Vec<&str> = def.args().iter().map(|a| a.man_name().unwrap_or(a.kernel_name())).collect();
            let mut d = Diagnostic::new(
                Code::UnknownArgument,
                span,
                format!("`{}` has no argument `{}`", def.name(), ident.name),
            )
            .label("unknown argument");
            let candidates = def.args().iter().flat_map(|a| [Some(a.kernel_name()), a.man_name()]).flatten();
            d = match (did_you_mean(&ident.name, candidates), names.is_empty()) {
                (Some(s), _) => d.help(format!("did you mean `{s}`?")),
                (None, true) => d.help(format!("`{}` takes no arguments", def.name())),
                (None, false) => d.help(format!(
                    "`{}` takes ({}); `arg0`..`arg{}` work too",
                    def.name(),
                    names.join(", "),
                    names.len() - 1
                )),
            };
            self.push(d);
            return None;
        };
        let Some(arg) = def.args().get(index) else {
            if def.args().is_empty() && !has_signature(def) {
                // No kernel signature known: every register is a full-width argument.
                return Some((Arg { index: index as u8, width: Width::W64 }, 64));
            }
            self.push(
                Diagnostic::new(
                    Code::UnknownArgument,
                    span,
                    format!("`{}` has {} argument(s); there is no `{}`", def.name(), def.args().len(), ident.name),
                )
                .label("no such argument"),
            );
            return None;
        };
        if arg.pointer {
            self.push(
                Diagnostic::new(
                    Code::PointerArgument,
                    span,
                    format!("`{}` of `{}` is a pointer (`{}`)", ident.name, def.name(), arg.c_type()),
                )
                .label("seccomp compares the address, not what it points to")
                .help("to restrict paths, use `filesystem:`; a pointer test is only useful against 0 (NULL)"),
            );
        }
        Some((Arg { index: index as u8, width: width_of_bits(arg.bits) }, u32::from(arg.bits)))
    }

    /// `bits`: how many bits of the argument the kernel reads.
    fn value(&mut self, v: &g::Value, bits: u32, when: &CondAst, table: &Table) -> Option<u64> {
        let mask = low_bits(bits);
        let span = when.file_span(v.span());
        let raw = match v {
            g::Value::Number { value, negative: false, .. } => *value,
            g::Value::Number { value, negative: true, .. } => {
                let limit = 1u64 << (bits - 1);
                if *value > limit {
                    self.push(
                        Diagnostic::new(
                            Code::ConstantTooWide,
                            span,
                            format!("-{value} does not fit in a {bits}-bit argument"),
                        )
                        .label("out of range")
                        .help(format!("negative values go down to -{limit}")),
                    );
                    return None;
                }
                value.wrapping_neg() & mask
            }
            g::Value::Constant(ident) => self.constant(ident, bits, when, table)?,
            g::Value::BitOr(items, _) => {
                let mut acc = 0;
                for item in items {
                    acc |= self.value(item, bits, when, table)?;
                }
                acc
            }
        };
        if raw & !mask != 0 {
            self.push(
                Diagnostic::new(
                    Code::ConstantTooWide,
                    span,
                    format!("{raw:#x} is wider than this {bits}-bit argument"),
                )
                .label(format!("the kernel reads only the low {bits} bits"))
                .help(format!("the kernel would see {:#x}; write that if it is what you mean", raw & mask)),
            );
            return None;
        }
        Some(raw)
    }

    fn constant(&mut self, ident: &g::Ident, bits: u32, when: &CondAst, table: &Table) -> Option<u64> {
        let span = when.file_span(ident.span);
        match table.constant(&ident.name) {
            // C constants of type int that are negative (AT_FDCWD) arrive sign-extended.
            Some(v) if bits == 32 && v > u32::MAX as u64 && (v as i64) < 0 && (v as i64) >= i32::MIN as i64 => {
                Some(v & low_bits(bits))
            }
            Some(v) => Some(v),
            None => {
                let elsewhere: Vec<&str> = Target::LINUX
                    .into_iter()
                    .filter(|t| tables::table(*t).constant(&ident.name).is_some())
                    .map(|t| t.name())
                    .collect();
                if elsewhere.is_empty() {
                    let mut d =
                        Diagnostic::new(Code::UnknownConstant, span, format!("unknown constant `{}`", ident.name))
                            .label("not a constant the compiler knows");
                    d = match did_you_mean(&ident.name, table.constants.iter().map(|c| c.name())) {
                        Some(s) => d.help(format!("did you mean `{s}`?")),
                        None => d.help("write the number instead, or see docs/tables.md for the constants"),
                    };
                    self.push(d);
                } else {
                    self.push(
                        Diagnostic::new(
                            Code::ConstantMissingOnTarget,
                            span,
                            format!("`{}` does not exist on {}", ident.name, table.target),
                        )
                        .label(format!("defined on {} only", elsewhere.join(", ")))
                        .help("restrict `targets:` or write the rule without it"),
                    );
                }
                None
            }
        }
    }

    fn check_allowed_and_denied(&mut self, ast: &PolicyAst, linux: &[Target]) {
        if linux.is_empty() {
            return;
        }
        fn named(r: &RuleAst) -> Option<&Spanned<String>> {
            match &r.subject {
                Subject::Syscall(n) => Some(n),
                Subject::Group(_) => None,
            }
        }
        for deny in ast.syscalls.rules.iter().filter(|r| r.section == Section::Deny && r.when.is_none()) {
            let Some(denied) = named(deny) else { continue };
            for allow in ast.syscalls.rules.iter().filter(|r| r.section != Section::Deny) {
                if named(allow).is_some_and(|a| a.value == denied.value) {
                    self.push(
                        Diagnostic::new(
                            Code::AllowedAndDenied,
                            allow.span.clone(),
                            format!("`{}` is allowed here but always denied", denied.value),
                        )
                        .label("this rule never applies")
                        .secondary(deny.span.clone(), "deny wins")
                        .help("remove one of the two rules"),
                    );
                }
            }
        }
    }

    fn launch(&mut self, ast: &PolicyAst) -> LaunchSettings {
        let strings =
            |v: &Option<Vec<Spanned<String>>>| v.as_ref().map(|ps| ps.iter().map(|p| p.value.clone()).collect());
        let filesystem = launch::Filesystem {
            read: strings(&ast.filesystem.read),
            write: strings(&ast.filesystem.write),
            execute: strings(&ast.filesystem.execute),
        };
        let ports = |v: &Option<Vec<Spanned<launch::PortRule>>>| {
            v.as_ref().map(|rs| {
                let set: BTreeSet<launch::PortRule> = rs.iter().map(|r| r.value).collect();
                set.into_iter().collect()
            })
        };
        let proxy = self.proxy(ast);
        let network = launch::Network { connect: ports(&ast.network.connect), bind: ports(&ast.network.bind), proxy };
        let value = |v: &Option<Spanned<u64>>| v.as_ref().map(|s| s.value);
        let limits = launch::Limits {
            cpu_seconds: value(&ast.limits.cpu_seconds),
            memory_bytes: value(&ast.limits.memory_bytes),
            processes: value(&ast.limits.processes),
            open_files: value(&ast.limits.open_files),
            file_size_bytes: value(&ast.limits.file_size_bytes),
        };
        let mut pass: Vec<String> = Vec::new();
        for p in &ast.env.pass {
            if !pass.contains(&p.value) {
                pass.push(p.value.clone());
            }
        }
        let env =
            launch::Env { pass, set: ast.env.set.iter().map(|(k, v)| (k.value.clone(), v.value.clone())).collect() };
        let audit = launch::Audit {
            log: ast.audit.log.as_ref().map_or_else(|| "capsule.log".to_owned(), |l| l.value.clone()),
            record: match &ast.audit.record {
                None => vec![Record::Invocations],
                Some(rs) => rs.iter().map(|r| r.value).collect::<BTreeSet<_>>().into_iter().collect(),
            },
        };
        // The ABI that enforces everything asked for: files need 1, TCP ports 4.
        // Signal/abstract-socket scoping (6) is applied when the kernel has it, and
        // required only when the policy says `scope: true` or asks for ABI 6 itself.
        let needs_net = network.connect.is_some() || network.bind.is_some();
        let explicit_scope = ast.landlock.scope.as_ref().map(|s| s.value);
        let mut min_abi: u8 = if needs_net { 4 } else { 1 };
        if explicit_scope == Some(true) {
            min_abi = 6;
        }
        if let Some(abi) = &ast.landlock.abi {
            min_abi = min_abi.max(u8::try_from(abi.value).unwrap_or(u8::MAX));
        }
        let landlock = launch::Landlock {
            min_abi,
            mode: ast.landlock.mode.as_ref().map_or(LandlockMode::Enforce, |m| m.value),
            scope: explicit_scope.unwrap_or(true),
        };
        LaunchSettings { filesystem, network, limits, env, audit, landlock }
    }
}

/// The setting behind the rules [`deny_setid`] adds.
pub const SETID_SETTING: &str = "filesystem: setid";

/// `filesystem: setid: false`, the default: no call may give a file the set-user-ID or
/// set-group-ID bit, as systemd's `RestrictSUIDSGID=` (a file the command leaves
/// behind would run as its owner for whoever runs it later). EPERM for `chmod`,
/// `fchmod`, `fchmodat`, `fchmodat2`, `creat`, `mknod` and `mknodat` with such a mode,
/// and for `open` and `openat` when they create (`O_CREAT`, or `O_TMPFILE`, whose bits
/// include `O_DIRECTORY`'s) with one; ENOSYS for `openat2`, whose mode is in a struct
/// the filter cannot read, so that libc falls back to `openat`. The mode is a 16-bit
/// `umode_t`, so the test ignores the bits above, as a written `mode & 06000 != 0`
/// would. Rules are added only for syscalls that can run (an allow or audit rule, or
/// a default that lets calls run): elsewhere the call is denied already.
fn deny_setid(table: &Table, default: Action, span: Span, syscalls: &mut BTreeMap<u32, SyscallRules>) {
    const S_ISUID: u64 = 0o4000;
    const S_ISGID: u64 = 0o2000;
    let origin = Origin { span, group: None, implied_by: Some(SETID_SETTING) };
    let constant = |name: &str| table.constant(name).unwrap_or_else(|| panic!("{name} on {}", table.target));
    let (o_creat, o_tmpfile) = (constant("O_CREAT"), constant("O_TMPFILE"));
    let mut deny = |name: &str, action: Action, cond: &dyn Fn(&SyscallDef) -> Cond| {
        let Some(def) = table.by_name(name) else { return };
        let entry =
            syscalls.entry(def.nr).or_insert_with(|| SyscallRules { name: def.name(), nr: def.nr, rules: Vec::new() });
        let may_run =
            default.lets_call_run() || entry.rules.iter().any(|r| matches!(r.kind, RuleKind::Allow | RuleKind::Audit));
        if may_run {
            entry.rules.push(Rule { kind: RuleKind::Deny(action), cond: cond(def), origin: origin.clone() });
        } else if entry.rules.is_empty() {
            syscalls.remove(&def.nr);
        }
    };
    let setid_mode = |def: &SyscallDef| arg_test(def, "mode", Test::MaskedNe { mask: S_ISUID | S_ISGID, value: 0 });
    for name in ["chmod", "fchmod", "fchmodat", "fchmodat2", "creat", "mknod", "mknodat"] {
        deny(name, Action::Errno(EPERM), &setid_mode);
    }
    let creating_setid = |def: &SyscallDef| {
        let creates = Cond::Or(vec![
            arg_test(def, "flags", Test::MaskedNe { mask: o_creat, value: 0 }),
            arg_test(def, "flags", Test::MaskedEq { mask: o_tmpfile, value: o_tmpfile }),
        ]);
        Cond::And(vec![creates, setid_mode(def)])
    };
    for name in ["open", "openat"] {
        deny(name, Action::Errno(EPERM), &creating_setid);
    }
    deny("openat2", Action::Errno(ENOSYS), &|_| Cond::True);
}

/// The setting behind the rules [`audit_destinations`] adds.
pub const PROXY_SETTING: &str = "network: domains or routes";

/// With a proxy, every allowed call that names a destination address
/// ([`DESTINATION_SYSCALLS`]: `connect` and `sendto` with an address) goes to the
/// launcher's supervisor, which records one not meant for the proxy as a direct
/// connection attempt (docs/network.md). An audit rule whose condition is the
/// syscall's own allowing condition (its allow and audit rules', or `true` under an
/// allowing default), so it never lets a call run that would not: a deny rule still
/// wins, and where nothing allows the call no rule is added. The notification table
/// answers these numbers with [`NotifyAnswer::Destination`](crate::valid::NotifyAnswer).
fn audit_destinations(table: &Table, default: Action, span: Span, syscalls: &mut BTreeMap<u32, SyscallRules>) {
    let origin = Origin { span, group: None, implied_by: Some(PROXY_SETTING) };
    for (name, addr, _) in DESTINATION_SYSCALLS {
        let Some(def) = table.by_name(name) else { continue };
        let rules = syscalls.get(&def.nr).map_or(&[][..], |r| r.rules.as_slice());
        let allowed = if default == Action::Allow {
            Cond::True
        } else {
            let conds: Vec<Cond> = rules
                .iter()
                .filter(|r| matches!(r.kind, RuleKind::Allow | RuleKind::Audit))
                .map(|r| r.cond.clone())
                .collect();
            match conds.len() {
                0 => continue,
                1 => conds.into_iter().next().unwrap_or(Cond::True),
                _ => Cond::Or(conds),
            }
        };
        // Without an address there is no destination: `sendto(fd, buf, len, flags,
        // NULL, 0)` is how libc sends on a connected socket, and `connect(fd, NULL, ..)`
        // fails with EFAULT.
        let Some(arg) = def.args().get(addr) else { continue };
        let with_address = arg_test(def, arg.kernel_name(), Test::Ne(0));
        let cond = if allowed == Cond::True { with_address } else { Cond::And(vec![allowed, with_address]) };
        let entry =
            syscalls.entry(def.nr).or_insert_with(|| SyscallRules { name: def.name(), nr: def.nr, rules: Vec::new() });
        entry.rules.push(Rule { kind: RuleKind::Audit, cond, origin: origin.clone() });
    }
}

/// `test` on the argument the kernel calls `name`, at the width the kernel reads.
fn arg_test(def: &SyscallDef, name: &str, test: Test) -> Cond {
    let index =
        def.args().iter().position(|a| a.kernel_name() == name).unwrap_or_else(|| panic!("{}({name})", def.name()));
    let bits = u32::from(def.args()[index].bits);
    let arg = Arg { index: index as u8, width: width_of_bits(def.args()[index].bits) };
    if bits < arg.width.bits() { on_low_bits(arg, low_bits(bits), test) } else { Cond::Test { arg, test } }
}

impl Lower {
    /// `network: domains:`, `proxy:` and `routes:` for the launcher; present iff
    /// domains or routes are. A variable a route reads must not reach the command.
    fn proxy(&mut self, ast: &PolicyAst) -> Option<launch::Proxy> {
        let net = &ast.network;
        for route in net.routes.iter().flatten() {
            for (header, template, vars) in &route.headers {
                for var in vars {
                    let passed = ast.env.pass.iter().find(|p| &p.value == var).map(|p| p.span.clone());
                    let set = ast.env.set.iter().find(|(k, _)| &k.value == var).map(|(k, _)| k.span.clone());
                    if let Some(given) = passed.or(set) {
                        self.diags.push(
                            Diagnostic::new(
                                Code::CredentialPassed,
                                template.span.clone(),
                                format!("`{var}` is read by the route {}'s `{}` header and also given to the command", route.prefix.value, header.value),
                            )
                            .label("read by the proxy here")
                            .secondary(given, "given to the command here")
                            .help(format!("remove `{var}` from `env:`: the proxy adds the header so that the command never holds the value")),
                        );
                    }
                }
            }
        }
        if net.domains.is_none() && net.routes.is_none() {
            return None;
        }
        let mut domains: Vec<String> = net.domains.iter().flatten().map(|d| d.value.clone()).collect();
        domains.sort();
        domains.dedup();
        let mut routes: Vec<launch::Route> = net
            .routes
            .iter()
            .flatten()
            .map(|r| launch::Route {
                prefix: r.prefix.value.clone(),
                upstream: r.upstream.value.clone(),
                headers: r.headers.iter().map(|(n, v, _)| (n.value.clone(), v.value.clone())).collect(),
            })
            .collect();
        routes.sort_by(|a, b| a.prefix.cmp(&b.prefix));
        Some(launch::Proxy {
            domains,
            port: net.proxy_port.as_ref().map_or(0, |p| p.value as u16),
            allow_private: net.allow_private.as_ref().is_some_and(|a| a.value),
            routes,
        })
    }
}

/// With a proxy, the command must be able to reach it (an AF_INET socket and
/// `connect`), and a `connect` it may use must not reach pathname UNIX sockets
/// (docs/network.md): both decided on the policy's own rules, per Linux target.
fn proxy_warnings(ast: &PolicyAst, policy: &Policy) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if policy.launch.network.proxy.is_none() {
        return out;
    }
    let span = ast.network.proxy_span();
    for target in policy.targets.iter().copied().filter(|t| t.is_linux()) {
        if policy.syscalls_for(target).is_none() {
            continue;
        }
        let table = crate::tables::table(target);
        let (Some(arch), Some(socket), Some(connect)) =
            (target.audit_arch(), table.by_name("socket"), table.by_name("connect"))
        else {
            continue;
        };
        let constant = |name: &str| table.constant(name).unwrap_or(0);
        let runs = |nr: u32, args: [u64; 6]| {
            crate::ir::decide(policy, target, &crate::ir::Call { arch, nr, args }).action.lets_call_run()
        };
        let inet = runs(socket.nr, [constant("AF_INET"), constant("SOCK_STREAM"), 0, 0, 0, 0]);
        let unix = runs(socket.nr, [constant("AF_UNIX"), constant("SOCK_STREAM"), 0, 0, 0, 0]);
        let connects = runs(connect.nr, [3, 0, 16, 0, 0, 0]);
        if !inet || !connects {
            let denied = if !inet { "socket(AF_INET, SOCK_STREAM)" } else { "connect" };
            out.push(
                Diagnostic::new(Code::ProxyUnreachable, span.clone(), format!("on {target} the command cannot reach the proxy: the syscall rules deny {denied}"))
                    .label("the proxy serves these")
                    .help("allow `socket` for AF_INET and `connect`, e.g. `@network-io` with `socket: domain not in [AF_INET, AF_INET6]` under deny"),
            );
        } else if unix {
            out.push(
                Diagnostic::new(Code::UnixSocketsReachable, span.clone(), format!("on {target} the command may create UNIX sockets and connect them: pathname sockets outside the sandbox (/run/docker.sock, D-Bus) are reachable"))
                    .label("`connect` is allowed for the proxy")
                    .help("deny UNIX sockets, e.g. `socket: domain not in [AF_INET, AF_INET6]` under deny; socketpair still works"),
            );
        }
    }
    out
}

fn has_signature(def: &SyscallDef) -> bool {
    def.args_known
}

pub fn lower_action(a: &ActionAst) -> Action {
    match a {
        ActionAst::Allow => Action::Allow,
        ActionAst::Errno(n) => Action::Errno(*n),
        ActionAst::KillProcess => Action::KillProcess,
        ActionAst::KillThread => Action::KillThread,
        ActionAst::Trap => Action::Trap,
        ActionAst::Log => Action::Log,
    }
}

/// The warning for a condition constant as a whole.
fn constant_condition(when: &CondAst, always: bool) -> Diagnostic {
    let (code, message, label, help) = if always {
        (
            Code::AlwaysTrue,
            "this condition is always true",
            "true for every call",
            "the rule applies to every call: write it without a condition, or fix the tests",
        )
    } else {
        (
            Code::AlwaysFalse,
            "this condition is always false: the rule never applies",
            "no call satisfies it",
            "the tests contradict each other: fix the values or remove the rule",
        )
    };
    Diagnostic::new(code, when.file_span(when.expr.span()), message).label(label).help(help)
}

/// `test` on an argument the kernel truncates to the bits of `mask` (a `umode_t` is
/// read as 16 bits of a 32-bit word), written as tests on the word that ignore the
/// bits above: garbage there must neither bypass a test nor fail an allowed call. The
/// IR compares at 32 or 64 bits only, so equalities become masked equalities and a
/// range becomes the aligned blocks below its bound (at most one per bit).
fn on_low_bits(arg: Arg, mask: u64, test: Test) -> Cond {
    let masked_eq = |value| Cond::Test { arg, test: Test::MaskedEq { mask, value } };
    let masked_ne = |value| Cond::Test { arg, test: Test::MaskedNe { mask, value } };
    // `arg & mask < bound`, for 0 <= bound <= mask + 1.
    let below = |bound: u64| {
        if bound > mask {
            return Cond::True;
        }
        let blocks: Vec<Cond> = (0..mask.count_ones())
            .rev()
            .filter(|bit| bound & (1 << bit) != 0)
            .map(|bit| {
                // Same bits as `bound` above `bit`, a 0 at `bit`, anything below.
                let block_mask = mask & !((1u64 << bit) - 1);
                Cond::Test { arg, test: Test::MaskedEq { mask: block_mask, value: bound & block_mask & !(1 << bit) } }
            })
            .collect();
        match blocks.len() {
            0 => Cond::False,
            1 => blocks.into_iter().next().expect("one block"),
            _ => Cond::Or(blocks),
        }
    };
    let not = |c: Cond| Cond::Not(Box::new(c));
    match test {
        Test::Eq(v) => masked_eq(v),
        Test::Ne(v) => masked_ne(v),
        Test::Lt(v) => below(v),
        Test::Le(v) => below(v + 1),
        Test::Gt(v) => not(below(v + 1)),
        Test::Ge(v) => not(below(v)),
        Test::In(vs) => Cond::Or(vs.into_iter().map(masked_eq).collect()),
        Test::NotIn(vs) => Cond::And(vs.into_iter().map(masked_ne).collect()),
        Test::MaskedEq { mask: m, value } => Cond::Test { arg, test: Test::MaskedEq { mask: m & mask, value } },
        Test::MaskedNe { mask: m, value } => Cond::Test { arg, test: Test::MaskedNe { mask: m & mask, value } },
    }
}

/// `Some(true)` when the test holds for every value in `0..=max`, `Some(false)` when
/// for none.
pub fn triviality(test: &Test, max: u64) -> Option<bool> {
    match test {
        Test::Lt(0) => Some(false),
        Test::Gt(v) if *v == max => Some(false),
        Test::Ge(0) => Some(true),
        Test::Le(v) if *v == max => Some(true),
        Test::MaskedEq { mask, value } if value & !mask != 0 => Some(false),
        Test::MaskedNe { mask, value } if value & !mask != 0 => Some(true),
        Test::MaskedEq { mask: 0, value: 0 } => Some(true),
        Test::MaskedNe { mask: 0, value: 0 } => Some(false),
        Test::In(xs) if xs.is_empty() => Some(false),
        Test::NotIn(xs) if xs.is_empty() => Some(true),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every 16-bit test, rewritten for the 32-bit word, decides as the test does on the
    /// low 16 bits, whatever bits 16 to 63 hold.
    #[test]
    fn tests_on_16_bit_arguments_ignore_the_bits_above() {
        let arg = Arg { index: 2, width: Width::W32 };
        let mask = low_bits(16);
        let bounds = [0, 1, 2, 0o777, 0x1000, 0x7fff, 0x8000, 0xfffe, 0xffff];
        let mut tests = vec![Test::In(vec![0, 0o755, 0xffff]), Test::NotIn(vec![1, 0o644])];
        for &v in &bounds {
            tests.extend([Test::Eq(v), Test::Ne(v), Test::Lt(v), Test::Le(v), Test::Gt(v), Test::Ge(v)]);
            tests.extend([Test::MaskedEq { mask: 0o7000, value: v & 0o7000 }, Test::MaskedNe { mask: v, value: 0 }]);
        }
        let values = (0..=0x3ff).chain(bounds.iter().flat_map(|&b: &u64| b.saturating_sub(2)..=(b + 2).min(mask)));
        let values: Vec<u64> = values.chain((0..=mask).step_by(61)).collect();
        for test in tests {
            let cond = on_low_bits(arg, mask, test.clone());
            for &low in &values {
                for high in [0, 0x1_0000, 0x8000_0000, 0xffff_0000, 0xdead_beef_0000_0000, 0xffff_ffff_ffff_0000] {
                    let mut args = [0u64; 6];
                    args[2] = low | high;
                    assert_eq!(cond.eval(&args), test.eval(low), "{test:?} on {:#x}: {cond:?}", low | high);
                }
            }
        }
    }

    /// `O_DIRECTORY` is 0o200000 on x86_64 and 0o40000 on aarch64: the condition is
    /// constant on one target only, so it is not reported unless that is the only one.
    #[test]
    fn a_condition_constant_on_one_target_only_is_not_reported() {
        let rule = "syscalls:\n  allow:\n    - openat: flags & O_DIRECTORY != 0 && flags & 0o200000 == 0\n";
        let codes = |source: String| -> Vec<&'static str> {
            crate::front::check(&source).diagnostics.iter().map(|d| d.code.as_str()).collect()
        };
        assert_eq!(codes(format!("version: 1\n{rule}")), Vec::<&str>::new());
        assert_eq!(codes(format!("version: 1\ntargets: [linux-x86_64]\n{rule}")), ["W0302"]);
        assert_eq!(codes(format!("version: 1\ntargets: [linux-aarch64]\n{rule}")), Vec::<&str>::new());

        // Never true on either target, for a different reason on each: on aarch64 the
        // first test alone is always false, on x86_64 only the two together are.
        let rule = "syscalls:\n  allow:\n    - openat: flags & O_DIRECTORY == 0o200000 && flags & 0o200000 == 0\n";
        assert_eq!(codes(format!("version: 1\n{rule}")), ["W0302"]);
        assert_eq!(codes(format!("version: 1\ntargets: [linux-aarch64]\n{rule}")), ["W0302"]);
        assert_eq!(codes(format!("version: 1\ntargets: [linux-x86_64]\n{rule}")), ["W0302"]);
    }

    #[test]
    fn a_range_becomes_at_most_one_block_per_bit() {
        let arg = Arg { index: 0, width: Width::W32 };
        let blocks = |c: &Cond| if let Cond::Or(items) = c { items.len() } else { 1 };
        assert_eq!(blocks(&on_low_bits(arg, 0xffff, Test::Lt(0o1000))), 1);
        assert_eq!(blocks(&on_low_bits(arg, 0xffff, Test::Lt(0xffff))), 16);
        assert_eq!(on_low_bits(arg, 0xffff, Test::Le(0xffff)), Cond::True);
        assert_eq!(on_low_bits(arg, 0xffff, Test::Lt(0)), Cond::False);
    }
}
