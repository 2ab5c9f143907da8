//! Rendering a model file's chat template within a memory bound.
//!
//! The template is hostile input. minijinja's fuel bounds its steps, but one step can build a
//! string or list of any size (`s ~ s` doubles, `'x' * n`, `'%s%s'|format(s, s)`, a capture
//! block that prints a value twice), so 40 steps can ask for a terabyte and kill the process
//! or the browser tab. Here each step that can build more than a fixed amount pays for it,
//! before building it, out of one byte budget per rendering:
//!
//! - Constant expressions, which minijinja computes while compiling (`'x' * 99999999`), are
//!   sized from the syntax tree first.
//! - The compiled program is rewritten (minijinja's `unstable_machinery`): before each
//!   instruction that can build a value of any size (`~`, `+`, `*`, slicing, `in`, printing a
//!   value, splatting `*args`/`**kwargs`) goes a call to a guard that sizes the result from
//!   the operands on the stack, charges it and puts the operands back; the instruction then
//!   runs unchanged. Literal text and the fixed-size builders (list and map literals, macros,
//!   closures) are charged their size the same way.
//! - The environment starts empty: each filter, test, global function and method a template
//!   can call is registered here, and each one that can build text or lists sizes its output
//!   from its arguments before calling minijinja's own.
//!
//! Why that bounds memory: values are immutable (a namespace only holds values), so memory
//! grows only by building; everything built is charged when it is built, kept or not (text
//! converted, copied or joined again is charged again). What is left uncharged is a fixed
//! amount per instruction (stack slots, frames, loop state), bounded by the fuel. So a
//! rendering holds at most the budget, plus the fuel times a small constant, plus transient
//! copies of charged text (minijinja moves a built `String` into an `Arc<str>`), plus the
//! caller's messages.
//!
//! The same guards bound how deep values nest and keep them from containing themselves, so
//! that printing, comparing or dropping one cannot overflow the stack (see "Nesting and
//! cycles" below). Recursion of macros, `caller()` and recursive loops is bounded by
//! minijinja's own limit (500 frames).

use minijinja::machinery::ast::{self, CallArg, Expr, Stmt};
use minijinja::machinery::{
    CodeGenerator, Instruction, Instructions, Vm, WhitespaceConfig, make_string_output, parse,
};
use minijinja::syntax::SyntaxConfig;
use minijinja::value::{ObjectRepr, Value, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The work (minijinja fuel units) one chat-template rendering may do.
pub(super) const TEMPLATE_FUEL: u64 = 2_000_000;

/// What one rendering may build: text and list slots, in MiB. Real templates build a few times
/// their prompt (60 turns, 130 KB of text: 0.5 to 1.2 MiB). A growing `String` doubles its
/// capacity and moves, so memory can reach about three times what was built.
pub(super) const TEMPLATE_BUDGET_MIB: usize = 16;

/// A list or argument slot.
const ITEM: usize = size_of::<Value>();
/// A map entry (key, value and the tree's share).
const ENTRY: usize = 2 * ITEM + 16;
/// A separately allocated string or object: its header and the allocator's overhead.
const NODE: usize = 64;
/// HTML or JSON escaping writes at most 6 bytes for one (`&quot;`, `\u0001`); with the copy
/// of the unescaped text, 7.
const ESCAPED: usize = 7;
/// Unicode case mapping writes at most 3 bytes for one (`ΐ` → `Ϊ́`); with the copy of a
/// value converted to a string first, 4.
const CASE_MAPPED: usize = 4;
/// JSON and its `serde_json::Value` copy: at most 6 bytes written for one, plus the copy.
const JSON_STRING: usize = 8;
/// Deeper values than this are refused by the JSON size walk (which recurses).
const JSON_DEPTH: usize = 256;

/// How a rendering failed.
pub(super) enum Failure {
    OutOfFuel,
    OverBudget,
    /// A value too deep, or one that could contain itself (see "Nesting and cycles").
    Refused(Refusal),
    Other(Error),
}

/// Renders `source` with `context` as the root, within [`TEMPLATE_FUEL`] steps and
/// [`TEMPLATE_BUDGET_MIB`] MiB.
pub(super) fn render(source: &str, context: Value) -> Result<String, Failure> {
    render_with(source, context, &Arc::new(Budget::new(TEMPLATE_BUDGET_MIB << 20)))
}

fn render_with(source: &str, context: Value, budget: &Arc<Budget>) -> Result<String, Failure> {
    // Compiled here rather than by the environment, so that the constant expressions minijinja
    // folds while compiling are paid for first (`'x' * 99999999` is a 100 MB string before
    // the template runs), and so that the template cannot `{% include %}` itself unguarded.
    let whitespace = WhitespaceConfig { keep_trailing_newline: false, lstrip_blocks: true, trim_blocks: true };
    let ast = parse(source, NAME, SyntaxConfig, whitespace).map_err(Failure::Other)?;
    if budget.charge(folding_bytes(&ast)).is_err() {
        return Err(Failure::OverBudget);
    }
    let mut compiler = CodeGenerator::new(NAME, source);
    compiler.compile_stmt(&ast);
    let (program, blocks) = compiler.finish();
    let program = with_tolls(&program).map_err(Failure::Other)?;
    let required = required_blocks(&ast);
    let blocks = blocks
        .iter()
        .map(|(name, block)| {
            // Rebuilt programs lose minijinja's `required` mark (it has no public setter), so a
            // required block gets a program that fails as minijinja would render it: with no
            // `{% extends %}` (there is no loader) a required block is never overridden.
            let block = if required.contains(name) { required_block(block, name) } else { with_tolls(block)? };
            Ok((*name, block))
        })
        .collect::<Result<_, Error>>()
        .map_err(Failure::Other)?;
    let env = environment(budget);
    let mut text = String::new();
    let result = Vm::new(&env).eval(&program, context, &blocks, &mut make_string_output(&mut text), AutoEscape::None);
    // Checked first: a refused step may surface as another error (or be swallowed by a filter).
    if budget.exceeded.load(Ordering::Relaxed) {
        return Err(Failure::OverBudget);
    }
    if let Some(refusal) = *lock(&budget.refusal) {
        return Err(Failure::Refused(refusal));
    }
    if budget.out_of_steps.load(Ordering::Relaxed) {
        return Err(Failure::OutOfFuel);
    }
    match result {
        Ok(_) => Ok(text),
        Err(e) if e.kind() == ErrorKind::OutOfFuel => Err(Failure::OutOfFuel),
        Err(e) => Err(Failure::Other(e)),
    }
}

/// The template's name in error messages.
const NAME: &str = "chat";

/// The bytes one rendering may still build, and what the nesting rules know of its values.
struct Budget {
    limit: usize,
    used: AtomicUsize,
    exceeded: AtomicBool,
    /// The shapes of the lists and maps walked, by address, each with the value itself, kept
    /// alive so that its address is not reused for another while the rendering lasts.
    shapes: Mutex<HashMap<usize, (Value, Shape)>>,
    /// Items the nesting walks looked at, out of [`WALK_STEPS`].
    steps: AtomicUsize,
    out_of_steps: AtomicBool,
    /// The first nesting rule broken.
    refusal: Mutex<Option<Refusal>>,
}

impl Budget {
    fn new(limit: usize) -> Self {
        Budget {
            limit,
            used: AtomicUsize::new(0),
            exceeded: AtomicBool::new(false),
            shapes: Mutex::default(),
            steps: AtomicUsize::new(0),
            out_of_steps: AtomicBool::new(false),
            refusal: Mutex::default(),
        }
    }

    fn remaining(&self) -> usize {
        self.limit.saturating_sub(self.used.load(Ordering::Relaxed))
    }

    /// Pays for `bytes` about to be built, or refuses the step.
    fn charge(&self, bytes: usize) -> Result<(), Error> {
        let used = self.used.load(Ordering::Relaxed);
        match used.checked_add(bytes) {
            Some(total) if total <= self.limit => {
                self.used.store(total, Ordering::Relaxed);
                Ok(())
            }
            _ => {
                self.exceeded.store(true, Ordering::Relaxed);
                Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("the template built more than {TEMPLATE_BUDGET_MIB} MiB"),
                ))
            }
        }
    }
}

// ---- Nesting and cycles --------------------------------------------------------------------
//
// Printing, comparing, hashing, serializing and dropping a value recurse once per level of
// nesting, so a list built around itself 100,000 times in a loop overflows the stack, and a
// value that contains itself (`{% set ns.x = ns %}`) recurses until it does; in the browser
// that is a trap that takes the engine and its loaded model with it. Three rules, checked where
// values are built or changed, keep every value shallow and acyclic:
//
// 1. Depth: no value is more than MAX_DEPTH deep (text is 0 deep, a list of text 1). A
//    rendering builds nested values only with list, map and keyword-argument literals (a guard
//    before BuildList, BuildMap and BuildKwargs checks the items), with `set` on a namespace
//    (rule 2), and with filters, functions and methods (each result is checked after the call:
//    one call nests at most a level or two more than its arguments, so nothing deep exists
//    before it is refused). Constants fold into flat lists only, and the caller's messages are
//    shallow.
// 2. Changes: a template can change only namespaces (`set ns.x`) and loops (`loop.changed(x)`
//    keeps `x`) after building them (macro closures also change, but no template reaches into
//    them, and minijinja empties them when the rendering ends). A value that contains itself
//    needs a link to something built after it, which only a change makes. So what a namespace
//    or `loop.changed()` is given must hold no namespace and no loop: then nothing a change
//    links to leads back to a changeable value, and there is no cycle. And a namespace counts as
//    deep as it can ever get (what it is given is at most NAMESPACE_DEPTH deep), so a list that
//    holds one stays within rule 1 whatever the namespace is given later.
// 3. Lazy views: some results iterate what they were made from when they are iterated (slices,
//    `l * n`, `a + b` of lists, `reverse`, `zip`, `chain`, `items`, `.values()`), so a view of a
//    view of a view... recurses as deep as the chain, and a view of a namespace shows what it is
//    given later, out of rule 2's sight. A lazy operand of slicing or `*` is copied into a list
//    first, and a lazy result of a call that was given a lazy value, a namespace or a loop is
//    copied into a list (or map): so a view wraps only lists, maps and text (or `+` chains,
//    which minijinja flattens past 32).
//
// Cheap: a list or a map (minijinja's `Vec` and `BTreeMap`, which never change) is walked once
// per rendering and its shape remembered by its address (the value kept alive meanwhile, so
// the address is not reused), so a literal looks at each of its items once. Other objects
// (views, keyword arguments, macros) are walked each time, one step per item out of
// WALK_STEPS. A walk goes at most MAX_DEPTH levels down.

/// How deep values may nest. Real templates nest a few levels (messages, their content parts,
/// tool schemas: rarely 10); 64 levels of printing or dropping take a few tens of KB of stack.
pub(super) const MAX_DEPTH: usize = 64;
/// How deep a value a namespace may be given; a namespace counts one more, wherever it is.
pub(super) const NAMESPACE_DEPTH: usize = 32;
/// Items the nesting walks may look at in one rendering.
const WALK_STEPS: usize = TEMPLATE_FUEL as usize;
/// A remembered shape: its entry, and the value kept alive.
const REMEMBERED: usize = ENTRY + ITEM;

/// The nesting rule a rendering broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    TooDeep,
    TooDeepInNamespace,
    Cycle,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::TooDeep => write!(f, "nested values more than {MAX_DEPTH} levels deep"),
            Refusal::TooDeepInNamespace => {
                write!(f, "stored a value nested more than {NAMESPACE_DEPTH} levels deep in a namespace")
            }
            Refusal::Cycle => f.write_str(
                "stored a namespace or a loop inside a namespace or `loop.changed()`, which can make a value that contains itself",
            ),
        }
    }
}

/// What the nesting rules know of a value.
#[derive(Clone, Copy, Default)]
struct Shape {
    /// Levels of lists, maps and other containers (a namespace counted at its most).
    depth: usize,
    /// Holds a namespace or a loop (or is one).
    changeable: bool,
}

/// What kind of value the nesting rules see.
enum Class {
    /// Not an object: text, a number, none.
    Flat,
    Namespace,
    Loop,
    /// A list or a map, remembered by this address.
    Remembered(usize),
    /// A view that iterates what it was made from.
    Lazy,
    /// Keyword arguments, macros, groups: walked each time, never copied.
    Other,
}

/// minijinja's namespaces, loops and `+`/`chain` views are private types: told by type name
/// (minijinja is pinned; `the_nesting_rules_know_minijinjas_types` checks the names).
fn classify(value: &Value) -> Class {
    let Some(object) = value.as_object() else { return Class::Flat };
    if let Some(list) = object.downcast_ref::<Vec<Value>>() {
        return Class::Remembered(list as *const Vec<Value> as usize);
    }
    if let Some(map) = object.downcast_ref::<BTreeMap<Value, Value>>() {
        return Class::Remembered(map as *const BTreeMap<Value, Value> as usize);
    }
    let name = object.type_name();
    if name.ends_with("namespace_object::Namespace") {
        Class::Namespace
    } else if name.ends_with("loop_object::Loop") {
        Class::Loop
    } else if object.repr() == ObjectRepr::Iterable
        || name.ends_with("merge_object::MergeSeq")
        || name.ends_with("merge_object::MergeDict")
    {
        Class::Lazy
    } else {
        Class::Other
    }
}

/// A lock that a panic elsewhere does not poison for good.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Budget {
    /// Records the first rule broken and gives the error that stops the step.
    fn refuse(&self, refusal: Refusal) -> Error {
        lock(&self.refusal).get_or_insert(refusal);
        Error::new(ErrorKind::InvalidOperation, format!("the template {refusal}"))
    }

    fn step(&self) -> Result<(), Error> {
        if self.steps.fetch_add(1, Ordering::Relaxed) < WALK_STEPS {
            return Ok(());
        }
        self.out_of_steps.store(true, Ordering::Relaxed);
        Err(Error::new(ErrorKind::OutOfFuel, "the template's values took too many steps to check"))
    }

    /// `value`'s shape; refused when it is deeper than [`MAX_DEPTH`].
    fn shape(&self, value: &Value) -> Result<Shape, Error> {
        self.shape_at(value, 0)
    }

    /// `value`'s shape, `value` being `level` levels down in what is walked.
    fn shape_at(&self, value: &Value, level: usize) -> Result<Shape, Error> {
        let key = match classify(value) {
            Class::Flat => return Ok(Shape::default()),
            Class::Namespace => return Ok(Shape { depth: NAMESPACE_DEPTH + 1, changeable: true }),
            // What `loop.changed()` keeps is never printed or compared, only dropped.
            Class::Loop => return Ok(Shape { depth: 1, changeable: true }),
            Class::Remembered(key) => {
                if let Some((_, shape)) = lock(&self.shapes).get(&key) {
                    return Ok(*shape);
                }
                Some(key)
            }
            Class::Lazy | Class::Other => None,
        };
        // A container this far down makes what holds it deeper than allowed.
        if level >= MAX_DEPTH {
            return Err(self.refuse(Refusal::TooDeep));
        }
        let Some(object) = value.as_object() else { return Ok(Shape::default()) };
        let mut shape = Shape { depth: 1, changeable: false };
        let mut visit = |item: &Value| -> Result<(), Error> {
            self.step()?;
            let inner = self.shape_at(item, level + 1)?;
            shape.depth = shape.depth.max(inner.depth + 1);
            shape.changeable |= inner.changeable;
            Ok(())
        };
        match object.repr() {
            ObjectRepr::Map => {
                for (key, item) in object.try_iter_pairs().into_iter().flatten() {
                    visit(&key)?;
                    visit(&item)?;
                }
            }
            ObjectRepr::Seq | ObjectRepr::Iterable => {
                for item in object.try_iter().into_iter().flatten() {
                    visit(&item)?;
                }
            }
            // Printed and compared by their own text; they hold nothing a template reaches.
            _ => {}
        }
        if shape.depth > MAX_DEPTH {
            return Err(self.refuse(Refusal::TooDeep));
        }
        if let Some(key) = key {
            self.charge(REMEMBERED)?;
            lock(&self.shapes).insert(key, (value.clone(), shape));
        }
        Ok(shape)
    }

    /// Rule 1 for a list, map or keyword arguments about to be built from `items`.
    fn check_built(&self, items: &[Value]) -> Result<(), Error> {
        let mut depth = 1;
        for item in items {
            depth = depth.max(self.shape(item)?.depth + 1);
        }
        if depth > MAX_DEPTH { Err(self.refuse(Refusal::TooDeep)) } else { Ok(()) }
    }

    /// Rule 2 for a value a namespace is about to be given.
    fn check_stored(&self, value: &Value) -> Result<(), Error> {
        let shape = self.shape(value)?;
        if shape.changeable {
            Err(self.refuse(Refusal::Cycle))
        } else if shape.depth > NAMESPACE_DEPTH {
            Err(self.refuse(Refusal::TooDeepInNamespace))
        } else {
            Ok(())
        }
    }

    /// A call's result under rules 1 and 3: a new lazy view of a lazy value, a namespace or a
    /// loop is copied; a result too deep is refused.
    fn settle(&self, receiver: Option<&Value>, args: &[Value], result: Value) -> Result<Value, Error> {
        let given = || receiver.into_iter().chain(args);
        let result = if matches!(classify(&result), Class::Lazy)
            && given().any(feeds_a_view)
            && !given().any(|arg| minijinja::tests::is_sameas(arg, &result))
        {
            self.copied(&result)?
        } else {
            result
        };
        self.shape(&result)?;
        Ok(result)
    }

    /// A lazy value copied into a list (or a map), paid for.
    fn copied(&self, value: &Value) -> Result<Value, Error> {
        let Some(object) = value.as_object() else { return Ok(value.clone()) };
        self.charge(NODE)?;
        if object.repr() == ObjectRepr::Map {
            let mut map = BTreeMap::new();
            for (key, item) in object.try_iter_pairs().into_iter().flatten() {
                self.charge(ENTRY)?;
                map.insert(key, item);
            }
            Ok(Value::from_object(map))
        } else {
            let mut items = Vec::new();
            for item in object.try_iter().into_iter().flatten() {
                self.charge(ITEM)?;
                items.push(item);
            }
            Ok(Value::from(items))
        }
    }

    /// `value`, copied into a list when it is a lazy view (rule 3, for slicing and `*`).
    fn unlazy(&self, value: &mut Value) -> Result<(), Error> {
        if matches!(classify(value), Class::Lazy) {
            *value = self.copied(value)?;
        }
        Ok(())
    }
}

/// Whether a view made from `arg` could change or grow a chain: `arg` is lazy, a namespace or a
/// loop, or keyword arguments holding one.
fn feeds_a_view(arg: &Value) -> bool {
    if arg.is_kwargs() {
        let pairs = arg.as_object().and_then(|object| object.try_iter_pairs());
        return pairs.into_iter().flatten().any(|(_, value)| feeds_a_view(&value));
    }
    matches!(classify(arg), Class::Lazy | Class::Namespace | Class::Loop)
}

// ---- The rewritten program ----------------------------------------------------------------

/// What an instruction pays before it runs.
enum Toll {
    Free,
    /// A size known from the program: literal text, list and map literals, macros, closures.
    Fixed(usize),
    /// A guard (a global function of that name) that sizes the result from the top `n` stack
    /// values, the instruction's operands, and returns them (or, for a lazy operand, a copy).
    Operands(&'static str, usize),
    /// An instruction the guards cannot watch: the template is refused.
    Refused(&'static str),
}

// Guards are globals whose names are not identifiers, so a template cannot shadow them.
const CHARGE: &str = "~charge";
const EMIT: &str = "~emit";
const CONCAT: &str = "~concat";
const ADD: &str = "~add";
const MUL: &str = "~mul";
const SLICE: &str = "~slice";
const CONTAINS: &str = "~in";
const SPLAT_ARGS: &str = "~splat_args";
const SPLAT_KWARGS: &str = "~splat_kwargs";
const BUILD_LIST: &str = "~build_list";
const BUILD_MAP: &str = "~build_map";
const SET_ATTR: &str = "~set_attr";
const CHANGED: &str = "~changed";
const REQUIRED_BLOCK: &str = "~required_block";

/// The toll of each instruction. Exhaustive on purpose: a minijinja update that adds an
/// instruction must be classified here.
fn toll(instruction: &Instruction) -> Toll {
    use Instruction as I;
    match instruction {
        I::EmitRaw(text) => Toll::Fixed(text.len()),
        I::Emit => Toll::Operands(EMIT, 1),
        I::StringConcat => Toll::Operands(CONCAT, 2),
        I::Add => Toll::Operands(ADD, 2),
        I::Mul => Toll::Operands(MUL, 2),
        // value, start, stop, step
        I::Slice => Toll::Operands(SLICE, 4),
        // needle, container: a container that is a string formats a needle that is not.
        I::In => Toll::Operands(CONTAINS, 2),
        // `a < b < c` and `a in b in c` (machinery does not export the operator's type, so
        // all chained comparisons pay what `in` would).
        I::CompareAndPreserve(_) => Toll::Operands(CONTAINS, 2),
        I::UnpackLists(0) | I::MergeKwargs(0) => Toll::Free,
        I::UnpackLists(n) => Toll::Operands(SPLAT_ARGS, *n),
        I::MergeKwargs(n) => Toll::Operands(SPLAT_KWARGS, *n),
        // Literals are checked for depth. A splatted list's items were charged by UnpackLists,
        // and `[*a, *b]` is no deeper than `a` or `b`.
        I::BuildList(Some(0) | None) | I::BuildMap(0) | I::BuildKwargs(0) => Toll::Fixed(NODE),
        I::BuildList(Some(n)) => Toll::Operands(BUILD_LIST, *n),
        // key, value, key, value...
        I::BuildMap(n) | I::BuildKwargs(n) => Toll::Operands(BUILD_MAP, n.saturating_mul(2)),
        // value, namespace
        I::SetAttr(_) => Toll::Operands(SET_ATTR, 2),
        // loop, arguments: `loop.changed(x)` keeps `x`.
        I::CallMethod("changed", Some(n)) => Toll::Operands(CHANGED, usize::from(*n)),
        I::CallMethod("changed", None) => Toll::Refused("the template splats arguments into `changed()`, which cannot be checked"),
        // The macro object and the program's list of macros, which keeps every definition.
        I::BuildMacro(..) => Toll::Fixed(2 * NODE),
        // A closure is kept until the rendering ends.
        I::Enclose(_) => Toll::Fixed(NODE + ENTRY),
        // Calls are paid by the filter, test, function or method they call; the rest moves
        // values that exist, or builds a fixed amount (a frame, a number).
        I::StoreLocal(_)
        | I::Lookup(_)
        | I::GetAttr(_)
        | I::GetItem
        | I::LoadConst(_)
        | I::UnpackList(_)
        | I::Sub
        | I::Div
        | I::IntDiv
        | I::Rem
        | I::Pow
        | I::Neg
        | I::Eq
        | I::Ne
        | I::Gt
        | I::Gte
        | I::Lt
        | I::Lte
        | I::Not
        | I::ApplyFilter(..)
        | I::PerformTest(..)
        | I::PushLoop(_)
        | I::PushWith
        | I::Iterate(_)
        | I::PushDidNotIterate
        | I::PopFrame
        | I::PopLoopFrame
        | I::Jump(_)
        | I::JumpIfFalse(_)
        | I::JumpIfFalseOrPop(_)
        | I::JumpIfTrueOrPop(_)
        | I::PushAutoEscape
        | I::PopAutoEscape
        | I::BeginCapture(_)
        | I::EndCapture
        | I::CallFunction(..)
        | I::CallMethod(..)
        | I::CallObject(_)
        | I::DupTop
        | I::DiscardTop
        | I::FastSuper
        | I::FastRecurse
        | I::Swap
        | I::CallBlock(_)
        | I::LoadBlocks
        | I::Include(_)
        | I::ExportLocals
        | I::Return
        | I::IsUndefined
        | I::GetClosure => Toll::Free,
    }
}

/// The instructions that pay `toll`.
fn toll_code(toll: &Toll) -> Result<Vec<Instruction<'static>>, Error> {
    Ok(match *toll {
        Toll::Free => Vec::new(),
        Toll::Fixed(bytes) => vec![
            Instruction::LoadConst(Value::from(bytes)),
            Instruction::CallFunction(CHARGE, Some(1)),
            Instruction::DiscardTop,
        ],
        Toll::Operands(guard, 1) => vec![Instruction::CallFunction(guard, Some(1))],
        Toll::Operands(guard, operands) => {
            let count = u16::try_from(operands).map_err(|_| {
                Error::new(ErrorKind::InvalidOperation, "the template builds or calls with more than 65535 items in one step")
            })?;
            vec![Instruction::CallFunction(guard, Some(count)), Instruction::UnpackList(operands)]
        }
        Toll::Refused(why) => return Err(Error::new(ErrorKind::InvalidOperation, why)),
    })
}

/// `program` with each instruction's toll before it. Jumps are moved to the toll of their
/// target, so no path skips one.
fn with_tolls<'s>(program: &Instructions<'s>) -> Result<Instructions<'s>, Error> {
    let mut tolled = Vec::with_capacity(program.len());
    for index in 0..program.len() as u32 {
        if let Some(instruction) = program.get(index) {
            tolled.push((toll_code(&toll(instruction))?, instruction));
        }
    }
    // `starts[i]`: where old instruction `i` (with its toll) starts; one more for the end.
    let mut starts = Vec::with_capacity(tolled.len() + 1);
    let mut next = 0;
    for (toll, _) in &tolled {
        starts.push(next);
        next += toll.len() as u32 + 1;
    }
    starts.push(next);
    let end = tolled.len();
    let moved = |target: u32| starts[(target as usize).min(end)];

    use Instruction as I;
    let mut rewritten = Instructions::new(program.name(), program.source());
    for (index, (toll, instruction)) in tolled.into_iter().enumerate() {
        let instruction = match instruction.clone() {
            I::Jump(target) => I::Jump(moved(target)),
            I::JumpIfFalse(target) => I::JumpIfFalse(moved(target)),
            I::JumpIfFalseOrPop(target) => I::JumpIfFalseOrPop(moved(target)),
            I::JumpIfTrueOrPop(target) => I::JumpIfTrueOrPop(moved(target)),
            I::Iterate(target) => I::Iterate(moved(target)),
            I::BuildMacro(name, target, flags) => I::BuildMacro(name, moved(target), flags),
            other => other,
        };
        // The toll keeps the instruction's location, for error messages.
        let (span, line) = (program.get_span(index as u32), program.get_line(index as u32));
        for added in toll.into_iter().chain([instruction]) {
            match (span, line) {
                (Some(span), _) => rewritten.add_with_span(added, span),
                (None, Some(line)) => rewritten.add_with_line(added, line as u16),
                (None, None) => rewritten.add(added),
            };
        }
    }
    Ok(rewritten)
}

// ---- Measuring values ---------------------------------------------------------------------

/// Counts what a value's formatting writes, and stops once it passes `limit`.
struct ByteCounter {
    bytes: usize,
    limit: usize,
}

impl fmt::Write for ByteCounter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.bytes = self.bytes.saturating_add(s.len());
        if self.bytes > self.limit { Err(fmt::Error) } else { Ok(()) }
    }
}

/// The bytes `format_args!` writes, or `usize::MAX` past `limit` (it stops writing there).
fn formatted_bytes(limit: usize, write: impl FnOnce(&mut ByteCounter) -> fmt::Result) -> usize {
    let mut counter = ByteCounter { bytes: 0, limit };
    match write(&mut counter) {
        Ok(()) => counter.bytes,
        Err(_) => usize::MAX,
    }
}

/// The bytes of `value` as a string (`{{ value }}`, `value ~ ''`, a string argument).
fn text_bytes(value: &Value, limit: usize) -> usize {
    match value.as_str() {
        Some(s) => s.len(),
        None => formatted_bytes(limit, |c| write!(c, "{value}")),
    }
}

/// The bytes of `value` converted to a string: nothing for a string, which is borrowed.
fn conversion_bytes(value: &Value, limit: usize) -> usize {
    if value.as_str().is_some() { 0 } else { text_bytes(value, limit) }
}

/// How many items iterating `value` yields (counted up to what `limit` bytes of slots hold).
fn item_count(value: &Value, limit: usize) -> usize {
    if let Some(s) = value.as_str() {
        return s.chars().count();
    }
    if let Some(n) = value.len() {
        return n;
    }
    match value.try_iter() {
        Ok(items) => items.take(limit / ITEM + 1).count(),
        Err(_) => 0,
    }
}

/// Slots for `value`'s items.
fn slots(value: &Value, limit: usize) -> usize {
    item_count(value, limit).saturating_mul(ITEM)
}

/// `NODE` plus, for each item, `ITEM` and `per_item(item)`; `usize::MAX` once past `limit`.
fn sum_items(value: &Value, limit: usize, mut per_item: impl FnMut(&Value, usize) -> usize) -> usize {
    let mut total = NODE;
    if let Ok(items) = value.try_iter() {
        for item in items {
            total = total.saturating_add(ITEM).saturating_add(per_item(&item, limit.saturating_sub(total)));
            if total > limit {
                return usize::MAX;
            }
        }
    }
    total
}

fn sum(parts: impl IntoIterator<Item = usize>) -> usize {
    parts.into_iter().fold(0, usize::saturating_add)
}

/// The arguments of a filter, test, function or method call.
struct Call<'a> {
    positional: &'a [Value],
    kwargs: Option<&'a Value>,
}

impl<'a> Call<'a> {
    fn new(args: &'a [Value]) -> Self {
        match args.split_last() {
            Some((last, rest)) if last.is_kwargs() => Call { positional: rest, kwargs: Some(last) },
            _ => Call { positional: args, kwargs: None },
        }
    }

    /// The filtered value (a filter's first argument).
    fn value(&self) -> &'a Value {
        self.positional.first().unwrap_or(&Value::UNDEFINED)
    }

    fn arg(&self, index: usize) -> Option<&'a Value> {
        self.positional.get(index).filter(|v| !v.is_undefined() && !v.is_none())
    }

    fn arg_or_kwarg(&self, index: usize, name: &str) -> Option<Value> {
        self.arg(index).cloned().or_else(|| self.kwargs?.get_attr(name).ok().filter(|v| !v.is_undefined()))
    }

    /// What converting the positional arguments at `indices` to strings builds.
    fn conversions(&self, indices: &[usize], limit: usize) -> usize {
        sum(indices.iter().filter_map(|&i| self.arg(i)).map(|v| conversion_bytes(v, limit)))
    }
}

/// The JSON (and `serde_json::Value` copy) that `tojson` builds for `value`.
fn json_bytes(value: &Value, style: &super::JsonStyle, limit: usize) -> usize {
    fn walk(value: &Value, style: &super::JsonStyle, depth: usize, left: &mut usize) -> Option<()> {
        fn take(left: &mut usize, bytes: usize) -> Option<()> {
            *left = left.checked_sub(bytes)?;
            Some(())
        }
        let newline = style.indent.as_ref().map_or(0, |indent| indent.width().saturating_mul(depth + 1).saturating_add(1));
        take(left, newline.saturating_add(NODE))?;
        if depth > JSON_DEPTH {
            return None;
        }
        if let Some(s) = value.as_str() {
            return take(left, JSON_STRING.saturating_mul(s.len()).saturating_add(2));
        }
        match value.kind() {
            ValueKind::Seq | ValueKind::Iterable => {
                for item in value.try_iter().ok()? {
                    take(left, style.item_separator.len())?;
                    walk(&item, style, depth + 1, left)?;
                }
                take(left, 2)
            }
            ValueKind::Map => {
                for key in value.try_iter().ok()? {
                    let item = value.get_item(&key).unwrap_or_default();
                    let key_bytes = text_bytes(&key, *left);
                    let separators = style.item_separator.len().saturating_add(style.key_separator.len());
                    take(left, JSON_STRING.saturating_mul(key_bytes).saturating_add(NODE + 2).saturating_add(separators))?;
                    walk(&item, style, depth + 1, left)?;
                }
                take(left, 2)
            }
            _ => {
                let bytes = text_bytes(value, *left);
                take(left, JSON_STRING.saturating_mul(bytes).saturating_add(2))
            }
        }
    }
    let mut left = limit;
    match walk(value, style, 0, &mut left) {
        Some(()) => limit - left,
        None => usize::MAX,
    }
}

/// An upper bound of what printf- or `str.format`-style formatting of `args` into `format`
/// writes: each field (a `%` or `{`) writes at most one argument's text, escaped, or a number,
/// padded to widths and precisions written in `format` (no field takes them from arguments).
fn format_bytes<'a>(format: &str, args: impl IntoIterator<Item = &'a Value>, limit: usize) -> usize {
    let fields = format.bytes().filter(|b| matches!(b, b'%' | b'{')).count();
    let widest = args.into_iter().map(|arg| text_bytes(arg, limit)).max().unwrap_or(0);
    let numbers = format
        .split(|c: char| !c.is_ascii_digit())
        .filter(|run| !run.is_empty())
        .map(|run| run.parse::<usize>().unwrap_or(usize::MAX));
    // A number with its sign, digits (an `f64` has up to 309 before the point) and separators.
    let per_field = ESCAPED.saturating_mul(widest).saturating_add(512);
    sum([format.len(), fields.saturating_mul(per_field), sum(numbers).saturating_mul(2), NODE])
}

/// How many pieces splitting `s` at `separator` (whitespace runs when `None`) makes.
fn split_pieces(s: &str, separator: Option<&str>, max_splits: Option<i64>) -> usize {
    let pieces = match separator {
        None => s.split_whitespace().count(),
        // `matches("")` finds every char boundary: `split("")` makes one more piece.
        Some(separator) => s.matches(separator).count() + 1,
    };
    match max_splits {
        Some(n) if n >= 0 => pieces.min((n as usize).saturating_add(1)),
        _ => pieces,
    }
}

/// What replacing `from` by `to` in `s` (at most `count` times when given) builds.
fn replace_bytes(s: &str, from: &str, to: &str, count: Option<usize>) -> usize {
    let matches = s.matches(from).count();
    let matches = count.map_or(matches, |count| matches.min(count));
    sum([s.len(), matches.saturating_mul(to.len()), NODE])
}

// ---- Constant folding ---------------------------------------------------------------------

/// A constant expression's value, as far as its size goes.
struct Folded {
    /// Bytes of its text (and an upper bound of its work when iterated or compared).
    bytes: usize,
    kind: FoldedKind,
    /// The value as a repeat count (`'x' * 3`): known for literals only.
    count: Option<usize>,
}

#[derive(Clone, Copy, PartialEq)]
enum FoldedKind {
    Text,
    List,
    Number,
    Other,
}

impl Folded {
    fn text(bytes: usize) -> Self {
        Folded { bytes, kind: FoldedKind::Text, count: None }
    }

    /// A number, a bool or none: at most this many bytes of text.
    fn scalar() -> Self {
        Folded { bytes: 48, kind: FoldedKind::Number, count: None }
    }

    fn literal(value: &Value) -> Self {
        let kind = match value.kind() {
            ValueKind::String => FoldedKind::Text,
            ValueKind::Number | ValueKind::Bool | ValueKind::None | ValueKind::Undefined => FoldedKind::Number,
            ValueKind::Seq | ValueKind::Iterable => FoldedKind::List,
            _ => FoldedKind::Other,
        };
        Folded { bytes: text_bytes(value, usize::MAX).max(8), kind, count: value.as_usize() }
    }
}

/// The bytes minijinja builds while it folds `template`'s constant expressions: it folds an
/// expression (`Expr::as_const`) whenever the compiler visits it, so a constant inside other
/// expressions is built once per enclosing expression (the parser nests at most 150 deep).
fn folding_bytes(template: &Stmt) -> usize {
    let mut work = 0;
    visit_statement(template, &mut work);
    work
}

fn visit_body(body: &[Stmt], work: &mut usize) {
    for statement in body {
        visit_statement(statement, work);
    }
}

fn visit_statement(statement: &Stmt, work: &mut usize) {
    // The statement's expressions, then the statements it holds.
    let mut expressions: Vec<&Expr> = Vec::new();
    match statement {
        Stmt::Template(_) | Stmt::EmitRaw(_) | Stmt::Continue(_) | Stmt::Break(_) | Stmt::Block(_) => {}
        Stmt::EmitExpr(e) => expressions.push(&e.expr),
        Stmt::ForLoop(f) => {
            expressions.extend([&f.target, &f.iter]);
            expressions.extend(&f.filter_expr);
        }
        Stmt::IfCond(i) => expressions.push(&i.expr),
        Stmt::WithBlock(w) => {
            expressions.extend(w.assignments.iter().flat_map(|(target, value)| [target, value]));
        }
        Stmt::Set(s) => expressions.extend([&s.target, &s.expr]),
        Stmt::SetBlock(s) => {
            expressions.push(&s.target);
            expressions.extend(&s.filter);
        }
        Stmt::AutoEscape(a) => expressions.push(&a.enabled),
        Stmt::FilterBlock(f) => expressions.push(&f.filter),
        Stmt::Import(i) => expressions.extend([&i.expr, &i.name]),
        Stmt::FromImport(f) => {
            expressions.push(&f.expr);
            for (name, alias) in &f.names {
                expressions.push(name);
                expressions.extend(alias);
            }
        }
        Stmt::Extends(e) => expressions.push(&e.name),
        Stmt::Include(i) => expressions.push(&i.name),
        Stmt::Macro(m) => expressions.extend(m.args.iter().chain(&m.defaults)),
        Stmt::CallBlock(c) => {
            visit_call(&c.call, work);
            expressions.extend(c.macro_decl.args.iter().chain(&c.macro_decl.defaults));
        }
        Stmt::Do(d) => visit_call(&d.call, work),
    }
    for expression in expressions {
        visit_expression(expression, work);
    }
    for body in bodies(statement) {
        visit_body(body, work);
    }
}

/// The statements `statement` holds.
fn bodies<'s, 'a>(statement: &'s Stmt<'a>) -> Vec<&'s [Stmt<'a>]> {
    match statement {
        Stmt::Template(t) => vec![&t.children],
        Stmt::ForLoop(f) => vec![&f.body, &f.else_body],
        Stmt::IfCond(i) => vec![&i.true_body, &i.false_body],
        Stmt::WithBlock(w) => vec![&w.body],
        Stmt::SetBlock(s) => vec![&s.body],
        Stmt::AutoEscape(a) => vec![&a.body],
        Stmt::FilterBlock(f) => vec![&f.body],
        Stmt::Block(b) => vec![&b.body],
        Stmt::Macro(m) => vec![&m.body],
        Stmt::CallBlock(c) => vec![&c.macro_decl.body],
        Stmt::EmitExpr(_)
        | Stmt::EmitRaw(_)
        | Stmt::Continue(_)
        | Stmt::Break(_)
        | Stmt::Set(_)
        | Stmt::Import(_)
        | Stmt::FromImport(_)
        | Stmt::Extends(_)
        | Stmt::Include(_)
        | Stmt::Do(_) => Vec::new(),
    }
}

/// The names of the blocks marked `{% block name required %}`.
fn required_blocks<'a>(statement: &Stmt<'a>) -> Vec<&'a str> {
    let mut names = Vec::new();
    if let Stmt::Block(b) = statement
        && b.required
    {
        names.push(b.name);
    }
    for body in bodies(statement) {
        names.extend(body.iter().flat_map(required_blocks));
    }
    names
}

/// A program for required block `name` that fails as minijinja's `required` mark makes it.
fn required_block<'s>(block: &Instructions<'s>, name: &'s str) -> Instructions<'s> {
    let mut failing = Instructions::new(block.name(), block.source());
    let line = block.get_line(0).unwrap_or(1) as u16;
    failing.add_with_line(Instruction::LoadConst(Value::from(name)), line);
    failing.add_with_line(Instruction::CallFunction(REQUIRED_BLOCK, Some(1)), line);
    failing
}

fn visit_call(call: &ast::Call, work: &mut usize) {
    visit_expression(&call.expr, work);
    visit_arguments(&call.args, work);
}

fn visit_arguments(args: &[CallArg], work: &mut usize) {
    for arg in args {
        match arg {
            CallArg::Pos(e) | CallArg::Kwarg(_, e) | CallArg::PosSplat(e) | CallArg::KwargSplat(e) => {
                visit_expression(e, work)
            }
        }
    }
}

/// As the compiler does: fold the expression, or compile its parts.
fn visit_expression(expression: &Expr, work: &mut usize) {
    if fold(expression, work).is_some() {
        return;
    }
    let mut expr = |e: &Expr| visit_expression(e, work);
    match expression {
        Expr::Var(_) | Expr::Const(_) => {}
        Expr::Slice(s) => {
            expr(&s.expr);
            [&s.start, &s.stop, &s.step].into_iter().flatten().for_each(expr);
        }
        Expr::UnaryOp(u) => expr(&u.expr),
        Expr::BinOp(b) => {
            expr(&b.left);
            expr(&b.right);
        }
        Expr::Compare(c) => {
            expr(&c.expr);
            c.ops.iter().for_each(|op| visit_expression(&op.expr, work));
        }
        Expr::IfExpr(i) => {
            expr(&i.test_expr);
            expr(&i.true_expr);
            if let Some(e) = &i.false_expr {
                expr(e);
            }
        }
        Expr::Filter(f) => {
            if let Some(e) = &f.expr {
                expr(e);
            }
            visit_arguments(&f.args, work);
        }
        Expr::Test(t) => {
            expr(&t.expr);
            visit_arguments(&t.args, work);
        }
        Expr::GetAttr(g) => expr(&g.expr),
        Expr::GetItem(g) => {
            expr(&g.expr);
            expr(&g.subscript_expr);
        }
        Expr::Call(c) => visit_call(c, work),
        Expr::List(l) => l.items.iter().for_each(expr),
        Expr::Map(m) => m.keys.iter().chain(&m.values).for_each(expr),
    }
}

/// What `expression.as_const()` gives, sized, adding what computing it builds to `work`;
/// `None` where minijinja does not fold it (or certainly fails to).
fn fold(expression: &Expr, work: &mut usize) -> Option<Folded> {
    let literal = |e: &Expr| match e {
        Expr::Const(c) => Some(Folded::literal(&c.value)),
        _ => None,
    };
    match expression {
        Expr::Const(c) => Some(Folded::literal(&c.value)),
        Expr::List(l) => {
            let items = l.items.iter().map(literal).collect::<Option<Vec<_>>>()?;
            *work = sum([*work, NODE, items.len().saturating_mul(ITEM)]);
            // Items are written quoted and escaped.
            let bytes = sum(items.iter().map(|item| ESCAPED.saturating_mul(item.bytes).saturating_add(4)));
            Some(Folded { bytes: bytes.saturating_add(2), kind: FoldedKind::List, count: None })
        }
        Expr::Map(m) => {
            let keys = m.keys.iter().map(literal).collect::<Option<Vec<_>>>()?;
            let values = m.values.iter().map(literal).collect::<Option<Vec<_>>>()?;
            *work = sum([*work, NODE, keys.len().saturating_mul(ENTRY)]);
            let quoted = keys.iter().chain(&values).map(|item| ESCAPED.saturating_mul(item.bytes).saturating_add(4));
            let bytes = sum(quoted);
            Some(Folded { bytes: bytes.saturating_add(2), kind: FoldedKind::Other, count: None })
        }
        Expr::UnaryOp(u) => {
            let operand = fold(&u.expr, work)?;
            match u.op {
                ast::UnaryOpKind::Not => Some(Folded::scalar()),
                ast::UnaryOpKind::Neg => {
                    matches!(operand.kind, FoldedKind::Number | FoldedKind::Other).then(Folded::scalar)
                }
            }
        }
        Expr::BinOp(b) => {
            // Both sides are folded before either is checked.
            let (left, right) = (fold(&b.left, work), fold(&b.right, work));
            let (folded, built) = fold_binary(b.op, &left?, &right?)?;
            *work = work.saturating_add(built);
            Some(folded)
        }
        Expr::Compare(c) => {
            let mut left = fold(&c.expr, work)?;
            for op in &c.ops {
                let right = fold(&op.expr, work)?;
                *work = sum([*work, left.bytes, right.bytes]);
                left = right;
            }
            Some(Folded::scalar())
        }
        _ => None,
    }
}

/// The value of `left op right` and the bytes computing it builds; `None` only where
/// minijinja certainly fails (and so does not fold). An `Other` operand (`a or b` of two
/// kinds) may be anything.
fn fold_binary(op: ast::BinOpKind, left: &Folded, right: &Folded) -> Option<(Folded, usize)> {
    use FoldedKind::{List, Number, Other, Text};
    use ast::BinOpKind as Op;
    let either = |kind: FoldedKind| if left.kind == right.kind { kind } else { Other };
    Some(match op {
        Op::Concat => {
            let bytes = left.bytes.saturating_add(right.bytes);
            (Folded::text(bytes), bytes)
        }
        Op::Add => match (left.kind, right.kind) {
            (Number, Number) => (Folded::scalar(), 0),
            (Text, Text) | (List, List) | (Other, _) | (_, Other) => {
                let bytes = left.bytes.saturating_add(right.bytes);
                (Folded { bytes, kind: either(left.kind), count: None }, bytes)
            }
            _ => return None,
        },
        Op::Mul => {
            // `'ab' * 3`: text or a list, times a count known for a literal only.
            let repeated = |unit: &Folded, times: &Folded| {
                let repeats = matches!(unit.kind, Text | List | Other) && matches!(times.kind, Number | Other);
                if repeats { times.count.map_or(usize::MAX, |n| unit.bytes.saturating_mul(n)) } else { 0 }
            };
            let bytes = repeated(left, right).max(repeated(right, left));
            match (left.kind, right.kind) {
                (Number, Number) => (Folded::scalar(), 0),
                (Text | List, Text | List) => return None,
                (Number, kind) | (kind, Number) => (Folded { bytes, kind, count: None }, bytes),
                _ => (Folded { bytes, kind: Other, count: None }, bytes),
            }
        }
        Op::Sub | Op::Div | Op::FloorDiv | Op::Rem | Op::Pow => (Folded::scalar(), 0),
        // Comparing walks both sides; `in` a string formats the needle.
        Op::Eq | Op::Ne | Op::Lt | Op::Lte | Op::Gt | Op::Gte | Op::In => {
            (Folded::scalar(), left.bytes.saturating_add(right.bytes))
        }
        Op::ScAnd | Op::ScOr => {
            (Folded { bytes: left.bytes.max(right.bytes), kind: either(left.kind), count: None }, 0)
        }
    })
}

// ---- The environment ------------------------------------------------------------------------

/// Sizes what a call will build from its arguments (`usize::MAX`: more than `limit`).
type Measure = fn(&State, &Call, usize) -> usize;

fn environment(budget: &Arc<Budget>) -> Environment<'static> {
    let mut env = Environment::empty();
    // A template comes from the model file: bound its work, so a hostile one (nested loops)
    // is refused instead of hanging the engine. Real templates use a few thousand units.
    env.set_fuel(Some(TEMPLATE_FUEL));
    add_guards(&mut env, budget);
    add_filters(&mut env, budget);
    add_tests(&mut env, budget);
    add_functions(&mut env, budget);
    let methods = budget.clone();
    env.set_unknown_method_callback(move |state, value, method, args| {
        methods.charge(method_bytes(value, method, args, methods.remaining())?)?;
        let result = minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)?;
        methods.settle(Some(value), args, result)
    });
    env
}

fn add_guards(env: &mut Environment<'static>, budget: &Arc<Budget>) {
    let charge = budget.clone();
    env.add_function(CHARGE, move |bytes: usize| charge.charge(bytes).map(|()| Value::UNDEFINED));
    let guard = |env: &mut Environment<'static>, name: &'static str, measure: fn(&State, &[Value], usize) -> usize| {
        add_guard(env, budget, name, move |budget, state, operands| {
            budget.charge(measure(state, operands, budget.remaining()))
        });
    };
    guard(env, EMIT, |state, operands, limit| match operands {
        [value] if value.is_safe() || matches!(state.auto_escape(), AutoEscape::None) => text_bytes(value, limit),
        [value] => ESCAPED.saturating_mul(text_bytes(value, limit)),
        _ => 0,
    });
    guard(env, CONCAT, |_, operands, limit| sum(operands.iter().map(|v| text_bytes(v, limit)).chain([NODE])));
    guard(env, ADD, |_, operands, limit| match operands {
        [a, b] => match (a.as_str(), b.as_str()) {
            (Some(a), Some(b)) => sum([a.len(), b.len(), NODE]),
            // Charged as a copy: minijinja copies long chains of `+`.
            _ if is_sequence(a) && is_sequence(b) => sum([slots(a, limit), slots(b, limit), NODE]),
            _ => 0,
        },
        _ => 0,
    });
    // Rule 3: minijinja's slices and repeats are views; a view is not made of a view.
    add_guard(env, budget, MUL, |budget, state, operands| {
        if let [a, b] = operands {
            budget.unlazy(a)?;
            budget.unlazy(b)?;
        }
        budget.charge(mul_bytes(state, operands, budget.remaining()))
    });
    add_guard(env, budget, SLICE, |budget, state, operands| {
        if let Some(value) = operands.first_mut() {
            budget.unlazy(value)?;
        }
        budget.charge(slice_bytes(state, operands, budget.remaining()))
    });
    // Rule 1 for literals, which pay for their slots here too.
    add_guard(env, budget, BUILD_LIST, |budget, _, items| {
        budget.charge(items.len().saturating_mul(ITEM).saturating_add(NODE))?;
        budget.check_built(items)
    });
    add_guard(env, budget, BUILD_MAP, |budget, _, keys_and_values| {
        budget.charge((keys_and_values.len() / 2).saturating_mul(ENTRY).saturating_add(NODE))?;
        budget.check_built(keys_and_values)
    });
    // Rule 2. Only namespaces can be set to (minijinja refuses the rest).
    add_guard(env, budget, SET_ATTR, |budget, _, operands| match operands {
        [value, target] if matches!(classify(target), Class::Namespace) => budget.check_stored(value),
        _ => Ok(()),
    });
    add_guard(env, budget, CHANGED, |budget, _, operands| match operands.split_first() {
        Some((receiver, kept)) if matches!(classify(receiver), Class::Loop) => {
            for value in kept {
                if budget.shape(value)?.changeable {
                    return Err(budget.refuse(Refusal::Cycle));
                }
            }
            Ok(())
        }
        _ => Ok(()),
    });
    env.add_function(REQUIRED_BLOCK, |name: &str| -> Result<Value, Error> {
        Err(Error::new(ErrorKind::InvalidOperation, format!("Required block '{name}' not found")))
    });
    guard(env, CONTAINS, |_, operands, limit| match operands {
        [needle, container] if container.as_str().is_some() => conversion_bytes(needle, limit),
        _ => 0,
    });
    guard(env, SPLAT_ARGS, |_, lists, limit| {
        // On the stack, then in the call's argument list.
        sum(lists.iter().map(|list| slots(list, limit).saturating_mul(2)))
    });
    guard(env, SPLAT_KWARGS, |_, maps, limit| {
        sum(maps.iter().map(|map| item_count(map, limit).saturating_mul(ENTRY)).chain([NODE]))
    });
}

/// Registers guard `name`, which checks (and may replace) the operands it is given and hands
/// them back to the instruction (a list, reversed, for `UnpackList`).
fn add_guard(
    env: &mut Environment<'static>,
    budget: &Arc<Budget>,
    name: &'static str,
    check: impl Fn(&Budget, &State, &mut [Value]) -> Result<(), Error> + Send + Sync + 'static,
) {
    let budget = budget.clone();
    env.add_function(name, move |state: &State, operands: &[Value]| -> Result<Value, Error> {
        let mut operands = operands.to_vec();
        check(&budget, state, &mut operands)?;
        Ok(match operands.as_slice() {
            [one] => one.clone(),
            _ => operands.into_iter().rev().collect(),
        })
    });
}

fn mul_bytes(_: &State, operands: &[Value], limit: usize) -> usize {
    let [a, b] = operands else { return 0 };
    let times = |n: &Value| n.as_usize().unwrap_or(0);
    let repeated = match (a.as_str(), b.as_str()) {
        (Some(s), _) => s.len().saturating_mul(times(b)),
        (_, Some(s)) => s.len().saturating_mul(times(a)),
        // minijinja repeats lazily; charged as a copy, so that no list is huge.
        _ if is_sequence(a) => slots(a, limit).saturating_mul(times(b)),
        _ if is_sequence(b) => slots(b, limit).saturating_mul(times(a)),
        _ => return 0,
    };
    repeated.saturating_add(NODE)
}

fn slice_bytes(_: &State, operands: &[Value], limit: usize) -> usize {
    match operands.first() {
        Some(value) => match value.as_str() {
            Some(s) => s.len() + NODE,
            None => slots(value, limit).saturating_add(NODE),
        },
        None => 0,
    }
}

fn is_sequence(value: &Value) -> bool {
    matches!(value.kind(), ValueKind::Seq | ValueKind::Iterable)
}

/// Registers `original` as `name`, paying `measure` first and settling its result (rules 1 and
/// 3 of "Nesting and cycles"; a test's is true or false).
fn add_measured(
    env: &mut Environment<'static>,
    budget: &Arc<Budget>,
    kind: Kind,
    name: &'static str,
    original: Value,
    measure: Measure,
) {
    let budget = budget.clone();
    let call = move |state: &State, args: &[Value]| -> Result<Value, Error> {
        budget.charge(measure(state, &Call::new(args), budget.remaining()))?;
        let result = original.call(state, args)?;
        if matches!(kind, Kind::Test) { Ok(result) } else { budget.settle(None, args, result) }
    };
    match kind {
        Kind::Filter => env.add_filter(name, call),
        Kind::Test => env.add_test(name, call),
        Kind::Function => env.add_function(name, call),
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Filter,
    Test,
    Function,
}

fn add_filters(env: &mut Environment<'static>, budget: &Arc<Budget>) {
    use minijinja::filters as f;
    let mut add = |name, original, measure: Measure| add_measured(env, budget, Kind::Filter, name, original, measure);
    let free: Measure = |_, _, _| 0;
    // Filters that build nothing beyond a number, a char or a value that exists.
    add("length", Value::from_function(f::length), free);
    add("count", Value::from_function(f::length), free);
    add("default", Value::from_function(f::default), free);
    add("d", Value::from_function(f::default), free);
    add("round", Value::from_function(f::round), free);
    add("abs", Value::from_function(f::abs), free);
    add("int", Value::from_function(f::int), free);
    add("float", Value::from_function(f::float), free);
    add("attr", Value::from_function(f::attr), free);
    add("first", Value::from_function(f::first), free);
    add("min", Value::from_function(f::min), free);
    add("max", Value::from_function(f::max), free);
    add("sum", Value::from_function(f::sum), free);
    add("bool", Value::from_function(f::bool), free);

    add("safe", Value::from_function(f::safe), |_, call, limit| text_bytes(call.value(), limit).saturating_add(NODE));
    let escape: Measure = |_, call, limit| {
        let value = call.value();
        if value.is_safe() { 0 } else { ESCAPED.saturating_mul(text_bytes(value, limit)).saturating_add(NODE) }
    };
    add("escape", Value::from_function(f::escape), escape);
    add("e", Value::from_function(f::escape), escape);
    let case_mapped: Measure =
        |_, call, limit| CASE_MAPPED.saturating_mul(text_bytes(call.value(), limit)).saturating_add(NODE);
    add("lower", Value::from_function(f::lower), case_mapped);
    add("upper", Value::from_function(f::upper), case_mapped);
    add("title", Value::from_function(f::title), case_mapped);
    add("capitalize", Value::from_function(f::capitalize), case_mapped);
    add("string", Value::from_function(f::string), |_, call, limit| {
        conversion_bytes(call.value(), limit).saturating_add(NODE)
    });
    add("replace", Value::from_function(f::replace), |state, call, limit| {
        let conversions = call.conversions(&[0, 1, 2], limit);
        if conversions > limit {
            return usize::MAX;
        }
        // Arguments that are not strings fit the budget: formatting them to count is safe.
        let text = |i: usize| match call.arg(i) {
            Some(v) => v.as_str().map_or_else(|| Cow::Owned(v.to_string()), Cow::Borrowed),
            None => Cow::Borrowed(""),
        };
        let replaced = replace_bytes(&text(0), &text(1), &text(2), None);
        let escaped = if matches!(state.auto_escape(), AutoEscape::None) { 1 } else { ESCAPED };
        sum([conversions, replaced.saturating_mul(escaped)])
    });
    add("trim", Value::from_function(f::trim), |_, call, limit| {
        // The trimmed copy, and the characters to trim collected as `char`s.
        let chars = call.arg(1).map_or(0, |chars| text_bytes(chars, limit).saturating_mul(4));
        sum([text_bytes(call.value(), limit), call.conversions(&[0], limit), chars, NODE])
    });
    add("join", Value::from_function(f::join), |state, call, limit| {
        let joiner = call.arg(1).map_or(0, |joiner| text_bytes(joiner, limit));
        let escaped = if matches!(state.auto_escape(), AutoEscape::None) { 1 } else { ESCAPED };
        sum_items(call.value(), limit, |item, left| {
            escaped.saturating_mul(text_bytes(item, left).saturating_add(joiner))
        })
        .saturating_add(joiner)
    });
    add("split", Value::from_function(f::split), |_, call, _| {
        // Only strings are split (anything else is an error).
        let (Some(s), separator) = (call.value().as_str(), call.arg(1)) else { return 0 };
        let separator = match separator.map(Value::as_str) {
            Some(None) => return 0,
            Some(Some(separator)) => Some(separator),
            None => None,
        };
        let pieces = split_pieces(s, separator, call.arg(2).and_then(Value::as_i64));
        sum([2 * s.len(), pieces.saturating_mul(ITEM + NODE), NODE])
    });
    add("lines", Value::from_function(f::lines), |_, call, _| {
        let Some(s) = call.value().as_str() else { return 0 };
        sum([s.len(), (s.lines().count() + 1).saturating_mul(ITEM + NODE), NODE])
    });
    add("indent", Value::from_function(f::indent), |_, call, limit| {
        let text = text_bytes(call.value(), limit);
        let width = call.arg_or_kwarg(1, "width").and_then(|w| w.as_usize()).unwrap_or(4);
        let newlines = call.value().as_str().map_or(text, |s| s.bytes().filter(|&b| b == b'\n').count());
        let indents = newlines.saturating_add(1).saturating_mul(width.saturating_add(1));
        sum([text.saturating_mul(2), indents, width, NODE])
    });
    let items_copied: Measure = |_, call, limit| slots(call.value(), limit).saturating_add(NODE);
    add("list", Value::from_function(f::list), items_copied);
    add("sort", Value::from_function(f::sort), items_copied);
    add("reverse", Value::from_function(f::reverse), |_, call, limit| match call.value().as_str() {
        Some(s) => s.len() + NODE,
        None => slots(call.value(), limit).saturating_add(NODE),
    });
    add("last", Value::from_function(f::last), items_copied);
    add("map", Value::from_function(f::map), items_copied);
    add("select", Value::from_function(f::select), |_, call, limit| {
        sum([slots(call.value(), limit), call.conversions(&[1], limit), NODE])
    });
    add("reject", Value::from_function(f::reject), |_, call, limit| {
        sum([slots(call.value(), limit), call.conversions(&[1], limit), NODE])
    });
    add("selectattr", Value::from_function(f::selectattr), |_, call, limit| {
        sum([slots(call.value(), limit), call.conversions(&[1, 2], limit), NODE])
    });
    add("rejectattr", Value::from_function(f::rejectattr), |_, call, limit| {
        sum([slots(call.value(), limit), call.conversions(&[1, 2], limit), NODE])
    });
    // Pairs, as `[key, value]` lists (also when iterated lazily).
    let pairs: Measure = |_, call, limit| {
        item_count(call.value(), limit).saturating_mul(NODE + 3 * ITEM).saturating_add(NODE)
    };
    add("items", Value::from_function(f::items), pairs);
    add("dictsort", Value::from_function(f::dictsort), pairs);
    add("groupby", Value::from_function(f::groupby), |_, call, limit| {
        item_count(call.value(), limit).saturating_mul(NODE + 2 * ITEM).saturating_add(NODE)
    });
    add("unique", Value::from_function(f::unique), |_, call, limit| {
        // Kept items, the set of seen values, and their lowercased copies.
        sum_items(call.value(), limit, |item, left| {
            sum([2 * ITEM + NODE, CASE_MAPPED.saturating_mul(text_bytes(item, left))])
        })
    });
    add("batch", Value::from_function(f::batch), |_, call, limit| {
        let items = item_count(call.value(), limit);
        let size = call.arg(1).and_then(Value::as_usize).unwrap_or(1).max(1);
        // Each batch is allocated `size` slots, the last one filled up to them.
        let batches = (items / size + 1).saturating_mul(size.saturating_mul(ITEM).saturating_add(NODE));
        sum([items.saturating_add(size).saturating_mul(ITEM), batches])
    });
    add("slice", Value::from_function(f::slice), |_, call, limit| {
        let items = item_count(call.value(), limit);
        let slices = call.arg(1).and_then(Value::as_usize).unwrap_or(0);
        sum([items.saturating_mul(2 * ITEM), slices.saturating_mul(NODE + 2 * ITEM), NODE])
    });
    add("chain", Value::from_function(f::chain), |_, call, _| call.positional.len().saturating_mul(ITEM) + NODE);
    // Lazy, but each step builds a tuple: charged as the list of them.
    add("zip", Value::from_function(f::zip), |_, call, limit| {
        let rows = call.positional.iter().map(|v| item_count(v, limit)).min().unwrap_or(0);
        rows.saturating_mul(NODE + call.positional.len() * ITEM).saturating_add(NODE)
    });
    add("pprint", Value::from_function(f::pprint), |_, call, limit| {
        let value = call.value();
        formatted_bytes(limit, |c| write!(c, "{value:#?}")).saturating_add(NODE)
    });
    add("format", Value::from_function(f::format), |_, call, limit| match call.value().as_str() {
        Some(format) => format_bytes(format, call.positional[1..].iter().chain(call.kwargs), limit),
        None => 0,
    });
    add("tojson", Value::from_function(super::python_tojson), |_, call, limit| {
        // Arguments that do not parse fail the call, which then builds nothing.
        let positional = call.positional.get(1..).unwrap_or_default();
        super::JsonStyle::parse(positional, call.kwargs).map_or(0, |style| json_bytes(call.value(), &style, limit))
    });
}

fn add_tests(env: &mut Environment<'static>, budget: &Arc<Budget>) {
    use minijinja::tests as t;
    // Tests answer true or false; these three format arguments that are not strings.
    let strings: Measure = |_, call, limit| call.conversions(&[0, 1], limit);
    add_measured(env, budget, Kind::Test, "startingwith", Value::from_function(t::is_startingwith), strings);
    add_measured(env, budget, Kind::Test, "endingwith", Value::from_function(t::is_endingwith), strings);
    add_measured(env, budget, Kind::Test, "in", Value::from_function(t::is_in), |_, call, limit| {
        match (call.positional.first(), call.positional.get(1)) {
            (Some(needle), Some(container)) if container.as_str().is_some() => conversion_bytes(needle, limit),
            _ => 0,
        }
    });
    env.add_test("undefined", t::is_undefined);
    env.add_test("defined", t::is_defined);
    env.add_test("none", t::is_none);
    env.add_test("safe", t::is_safe);
    env.add_test("escaped", t::is_safe);
    env.add_test("boolean", t::is_boolean);
    env.add_test("odd", t::is_odd);
    env.add_test("even", t::is_even);
    env.add_test("divisibleby", t::is_divisibleby);
    env.add_test("number", t::is_number);
    env.add_test("integer", t::is_integer);
    env.add_test("int", t::is_integer);
    env.add_test("float", t::is_float);
    env.add_test("string", t::is_string);
    env.add_test("sequence", t::is_sequence);
    env.add_test("iterable", t::is_iterable);
    env.add_test("mapping", t::is_mapping);
    env.add_test("lower", t::is_lower);
    env.add_test("upper", t::is_upper);
    env.add_test("sameas", t::is_sameas);
    for name in ["eq", "equalto", "=="] {
        env.add_test(name, t::is_eq);
    }
    for name in ["ne", "!="] {
        env.add_test(name, t::is_ne);
    }
    for name in ["lt", "lessthan", "<"] {
        env.add_test(name, t::is_lt);
    }
    for name in ["le", "<="] {
        env.add_test(name, t::is_le);
    }
    for name in ["gt", "greaterthan", ">"] {
        env.add_test(name, t::is_gt);
    }
    for name in ["ge", ">="] {
        env.add_test(name, t::is_ge);
    }
    env.add_test("true", t::is_true);
    env.add_test("false", t::is_false);
    env.add_test("filter", t::is_filter);
    env.add_test("test", t::is_test);
}

fn add_functions(env: &mut Environment<'static>, budget: &Arc<Budget>) {
    use minijinja::functions as f;
    // Lazy, and refuses more than 100,000 numbers.
    env.add_function("range", f::range);
    let entries: Measure = |_, call, limit| {
        let maps = call.positional.iter().chain(call.kwargs);
        sum(maps.map(|map| item_count(map, limit).saturating_mul(ENTRY)).chain([NODE]))
    };
    add_measured(env, budget, Kind::Function, "dict", Value::from_function(f::dict), entries);
    // Rule 2 for what a namespace starts with: the values of its maps and keyword arguments.
    let given = budget.clone();
    let namespace = Value::from_function(f::namespace);
    env.add_function("namespace", move |state: &State, args: &[Value]| -> Result<Value, Error> {
        given.charge(entries(state, &Call::new(args), given.remaining()))?;
        for map in args {
            for (_, value) in map.as_object().and_then(|map| map.try_iter_pairs()).into_iter().flatten() {
                given.check_stored(&value)?;
            }
        }
        namespace.call(state, args)
    });
    add_measured(env, budget, Kind::Function, "debug", Value::from_function(f::debug), |state, call, limit| {
        match call.positional {
            [] => formatted_bytes(limit, |c| write!(c, "{state:#?}")),
            [one] => formatted_bytes(limit, |c| write!(c, "{one:#?}")),
            all => formatted_bytes(limit, |c| write!(c, "{all:#?}")),
        }
    });
    // transformers' way for a template to refuse its input.
    let raise = budget.clone();
    env.add_function("raise_exception", move |message: &Value| -> Result<Value, Error> {
        raise.charge(text_bytes(message, raise.remaining()))?;
        Err(Error::new(ErrorKind::InvalidOperation, message.to_string()))
    });
}

/// What a Python string, dict or list method (minijinja-contrib's pycompat) builds; refuses
/// methods that pycompat does not have, so any it gains later are not called unmeasured.
fn method_bytes(value: &Value, method: &str, args: &[Value], limit: usize) -> Result<usize, Error> {
    let unknown = || Err(Error::from(ErrorKind::UnknownMethod));
    let arg_str = |i: usize| args.get(i).and_then(Value::as_str);
    Ok(match value.kind() {
        ValueKind::String => {
            let Some(s) = value.as_str() else { return unknown() };
            match method {
                "islower" | "isupper" | "isspace" | "isdigit" | "isnumeric" | "isalnum" | "isalpha"
                | "isascii" | "count" | "find" | "rfind" | "startswith" | "endswith" => 0,
                "upper" | "lower" | "title" | "capitalize" => CASE_MAPPED * s.len() + NODE,
                "strip" | "lstrip" | "rstrip" => sum([s.len(), 4 * arg_str(0).map_or(0, str::len), NODE]),
                "replace" => {
                    let count = args.get(2).and_then(Value::as_i64).and_then(|n| usize::try_from(n).ok());
                    replace_bytes(s, arg_str(0).unwrap_or(""), arg_str(1).unwrap_or(""), count)
                }
                "split" => {
                    let pieces = split_pieces(s, arg_str(0), args.get(1).and_then(Value::as_i64));
                    // Split, then copied into a new list.
                    sum([2 * s.len(), pieces.saturating_mul(2 * ITEM + NODE), NODE])
                }
                "splitlines" => sum([s.len(), (s.lines().count() + 1).saturating_mul(ITEM + NODE), NODE]),
                "format" => format_bytes(s, args, limit),
                "join" => match args.first() {
                    Some(items) => sum_items(items, limit, |item, left| text_bytes(item, left).saturating_add(s.len())),
                    None => 0,
                },
                _ => return unknown(),
            }
        }
        ValueKind::Map => match method {
            "keys" | "values" | "get" => NODE,
            "items" => item_count(value, limit).saturating_mul(NODE + 3 * ITEM).saturating_add(NODE),
            _ => return unknown(),
        },
        ValueKind::Seq => match method {
            "count" => 0,
            _ => return unknown(),
        },
        _ => return unknown(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The rendering before the guards: minijinja's own environment, as the tokenizer set it up.
    fn unguarded(source: &str, context: &serde_json::Value) -> Result<String, String> {
        let mut env = Environment::new();
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<String, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_filter("tojson", super::super::python_tojson);
        env.add_template("chat", source).map_err(|e| e.to_string())?;
        env.get_template("chat").unwrap().render(Value::from_serialize(context)).map_err(|e| e.to_string())
    }

    fn guarded(source: &str, context: &serde_json::Value) -> (Result<String, String>, usize) {
        let budget = Arc::new(Budget::new(TEMPLATE_BUDGET_MIB << 20));
        let rendered = render_with(source, Value::from_serialize(context), &budget).map_err(|failure| match failure {
            Failure::OutOfFuel => "out of fuel".to_string(),
            Failure::OverBudget => "over budget".to_string(),
            Failure::Refused(refusal) => refusal.to_string(),
            Failure::Other(e) => e.to_string(),
        });
        (rendered, budget.used.load(Ordering::Relaxed))
    }

    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    /// Much of what minijinja offers templates, each line a few features.
    const FEATURES: &str = r#"{%- macro row(m, sep=': ') -%}{{ m.role|upper }}{{ sep }}{{ m.content|trim }}{%- endmacro -%}
{%- macro wrap(tag) -%}<{{ tag }}>{{ caller() }}</{{ tag }}>{%- endmacro -%}
{%- set ns = namespace(count=0, parts=[], text='') -%}
{%- for m in messages -%}
  {%- set ns.count = ns.count + 1 -%}{%- set ns.parts = ns.parts + [m.role] -%}{%- set ns.text = ns.text ~ m.content[:3] -%}
  {{ loop.index }}/{{ loop.length }} {{ loop.cycle('odd', 'even') }} {{ loop.changed(m.role) }} {{ row(m) }}
  {% if loop.first %}first{% elif loop.last %}last{% else %}mid{% endif %}
  {%- if m.role == 'system' %}{% continue %}{% endif %}{%- if loop.index > 10 %}{% break %}{% endif %}
{% endfor -%}
{{ ns.count }} {{ ns.parts|join(',') }} {{ ns.text }} {{ ns.parts|unique|list }} {{ ns.parts|sort|reverse|list }}
{% call wrap('b') %}{{ messages|map(attribute='role')|join('|') }}{% endcall %}
{% filter upper %}shout {{ messages[0].content }}{% endfilter %}
{% set captured %}{{ messages|length }} msgs{% endset %}{{ captured }}{{ captured|length }}
{% set a, b = [1, 2] %}{{ a + b }} {{ 7 // 2 }} {{ 7 % 3 }} {{ 2 ** 10 }} {{ 7 / 2 }} {{ -3|abs }} {{ 3.14159|round(2) }} {{ '42'|int + 1 }} {{ '2.5'|float }}
{{ 'ab' * 3 }} {{ [1, 2] * 2 }} {{ [1, 2] + [3] }} {{ 'x' ~ 1 ~ none ~ true }} {{ 1 < 2 < 3 }} {{ 'a' in 'abc' }} {{ 'a' not in ['b'] }} {{ 2 in [1, 2] in [[1, 2]] }}
{{ {'b': 1, 'a': [1, {'c': none}]}|tojson }} {{ {'b': 1, 'a': 'x<y'}|tojson(2) }} {{ messages|tojson }}
{{ {'z': 1, 'a': 2}|dictsort }} {{ {'z': 1, 'a': 2}|items|list }} {{ dict(x=1, y=2) }} {{ dict({'q': 1}, r=2) }}
{% for g in messages|groupby('role') %}{{ g.grouper }}={{ g.list|length }};{% endfor %}
{{ range(10)|batch(3)|list }} {{ range(10)|batch(3, 'x')|list }} {{ range(10)|slice(3)|list }} {{ range(10, 0, -3)|list }}
{{ messages|selectattr('role', 'equalto', 'user')|map(attribute='content')|list }} {{ [1,2,3,4]|select('odd')|list }} {{ [1,2,3,4]|reject('even')|list }} {{ messages|rejectattr('role', 'in', ['user'])|list|length }}
{{ ['A','b','C']|map('lower')|join }} {{ 'hello world'|title }} {{ 'hello'|capitalize }} {{ 'a-b-c'|replace('-', '+') }} {{ 'a b  c'|split|list }} {{ 'a,b'|split(',') }} {{ 'l1\nl2'|lines }}
{{ "%s-%05d-%.2f"|format('x', 42, 3.14159) }} {{ '{}, {name}!'.format('hi', name='you') }}
{{ [3,1,2]|min }} {{ [3,1,2]|max }} {{ [3,1,2]|sum }} {{ [3,1,2]|first }} {{ [3,1,2]|last }} {{ 'xyz'|first }} {{ 'xyz'|last }} {{ 'xyz'|reverse }} {{ 'xyz'|list }} {{ 42|string ~ '!' }}
{{ nothing|default('dflt') }} {{ ''|default('empty', true) }} {{ none is none }} {{ 4 is divisibleby 2 }} {{ 'abc' is startingwith 'a' }} {{ 'abc' is endingwith 'c' }} {{ messages is sequence }} {{ messages[0] is mapping }} {{ 1 is sameas 1 }} {{ 'x' is lower }} {{ 'b' is in 'abc' }}
{{ [1,2]|chain([3])|list }} {{ [1,2]|zip(['a','b'])|list }} {{ {'a':1}|pprint }} {{ '  pad  '|trim }} {{ 'xxhixx'|trim('x') }} {{ 'a\nb'|indent(2, true) }} {{ 'a\nb'|indent(width=3) }} {{ '<&>'|e }} {{ '<&>'|safe }}
{{ ' s '.strip() }}|{{ 'ab'.upper() }}|{{ 'AB'.lower() }}|{{ 'a b'.split() }}|{{ 'a\nb'.splitlines() }}|{{ 'abc'.startswith(('x', 'a')) }}|{{ '-'.join(['a', 'b']) }}|{{ 'aXbX'.replace('X', 'Y', 1) }}|{{ 'hello'.count('l') }}|{{ 'hi'.title() }}|{{ 'abc'.find('c') }}|{{ {'a': 1}.items()|list }}|{{ {'a': 1}.keys()|list }}|{{ {'a': 1}.get('b', 'nope') }}|{{ [1,1,2].count(1) }}|{{ '12'.isdigit() }}
{% with x = 5 %}{{ x * 2 }}{% endwith %} {% autoescape true %}{{ '<b>' }}{{ '<i>'|safe }}{{ '<u>'|e }}{{ ['<', '>']|join('&') }}{% endautoescape %} {% autoescape 'json' %}{{ {'a': '<x>'} }}{% endautoescape %}
{% for item in [{'name': 'a', 'children': [{'name': 'b', 'children': []}]}] recursive %}{{ item.name }}[{{ loop(item.children) }}]{% endfor %}
{% block extra %}block {{ messages|length }}{% endblock %}
{{ messages[::-1]|map(attribute='role')|list }} {{ messages[1:2]|length }} {{ 'abcdef'[1:4] }} {{ 'abcdef'[::2] }} {{ 'abcdef'[-2:] }} {{ row(*[messages[0]], **{'sep': '=>'}) }}
{%- if add_generation_prompt %}<|assistant|>{% endif -%}
{%- if false %}{{ raise_exception('never') }}{% endif -%}"#;

    fn conversations() -> Vec<serde_json::Value> {
        let long: Vec<_> = (0..60)
            .map(|i| json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": format!("turn {i}: {}", "lorem ipsum dolor sit amet ".repeat(80))}))
            .collect();
        vec![
            json!({"messages": [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "hi <there> & 'you'"}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye"}], "add_generation_prompt": true, "bos_token": "<s>", "eos_token": "</s>"}),
            json!({"messages": [{"role": "user", "content": "Ünïcödé ✓ \"q\" \\ back"}], "add_generation_prompt": false, "bos_token": "", "eos_token": ""}),
            json!({"messages": long, "add_generation_prompt": true, "bos_token": "<s>", "eos_token": "</s>"}),
        ]
    }

    /// What real templates do with namespaces, nested values and lazy views, within the nesting
    /// rules: lists and maps of messages in namespaces, a namespace in a list, a map and keyword
    /// arguments, `loop.changed()`, views of views (copied, which prints the same), tools as JSON.
    const NESTING: &str = r#"{%- set ns = namespace(msgs=[], roles={}, last=none, tools=[{'name': 'f', 'parameters': {'type': 'object', 'properties': {'a': {'type': 'string', 'enum': ['x', 'y']}}}}]) -%}
{%- macro show(n, sep=', ') -%}{{ n.msgs|map(attribute='role')|join(sep) }}{%- endmacro -%}
{%- for m in messages -%}
  {%- set ns.msgs = ns.msgs + [m] -%}{%- set ns.roles = dict(ns.roles, **{m.role: loop.index}) -%}{%- set ns.last = m -%}
  {%- if loop.changed(m.role) %}[{{ m.role }}]{% endif -%}
{%- endfor %}
{{ show(ns) }} {{ show(n=ns, sep='|') }} {{ [ns]|length }} {{ {'n': ns}|length }} {{ ns.roles|dictsort }} {{ ns.last.role }} {{ ns.msgs|length }}
{{ ns.tools|tojson }} {{ ns.tools|tojson(indent=2) }} {{ ns.tools[0]|tojson(separators=(',', ':'), sort_keys=true) }}
{{ messages|reverse|map(attribute='role')|list }} {{ (messages|reverse)[0:2]|map(attribute='role')|list }} {{ messages[::-1]|zip(range(9))|list|length }} {{ (messages * 2)|length }} {{ ([1, 2] * 2)[1:] }} {{ (messages + messages)[1:3]|length }}
{{ [1, 2, 3][::-1]|zip(['a', 'b']) }} {{ ([1, 2]|reverse) * 2 }} {{ ([1] + [2] + [3])|reverse|list }} {{ [1, 2]|zip([3, 4])|zip([5, 6])|list }} {{ {'a': 1}|chain({'b': 2}) }}
{{ ns.items()|list|length }} {% for k, v in ns.items() %}{{ k }};{% endfor %} {{ ns|items|list|length }} {{ ns.roles.items()|list }} {{ ns.roles.values()|list }} {{ [1, [2, [3, [4]]]] }} {{ {'a': {'b': {'c': [1]}}} }}"#;

    #[test]
    fn guarded_rendering_equals_minijinjas() {
        let required = "{% block b required %}{% endblock %}";
        let not_rendered = "{% if false %}{% block b required %}{% endblock %}{% endif %}ok";
        for source in [CHATML, FEATURES, NESTING, required, not_rendered, "{{ messages[0].content + 1 }}", "{% for %}", "{{ raise_exception('no ' ~ messages|length) }}"] {
            for context in conversations() {
                let (rendered, charged) = guarded(source, &context);
                assert_eq!(rendered, unguarded(source, &context), "{source}");
                // The longest conversation (130 KB of text) charges about 1 MiB.
                assert!(charged < 2 << 20, "{charged} bytes charged for {source}");
            }
        }
    }

    /// The nesting rules tell minijinja's private types by name: a minijinja update that renames
    /// one fails here.
    #[test]
    fn the_nesting_rules_know_minijinjas_types() {
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("classes", |args: &[Value]| -> String {
            let class = |value: &Value| match classify(value) {
                Class::Flat => "flat",
                Class::Namespace => "namespace",
                Class::Loop => "loop",
                Class::Remembered(_) => "remembered",
                Class::Lazy => "lazy",
                Class::Other => "other",
            };
            args.iter().map(class).collect::<Vec<_>>().join(" ")
        });
        let source = "{% macro m() %}{% endmacro %}{% for i in [1] %}{{ classes('x', 1, namespace(), loop, [1], {'a': 1}, messages, \
                      [1] + [2], {'a': 1}|chain({'b': 2}), [1]|reverse, [1, 2][1:], [1] * 2, {'a': 1}.items(), m) }}{% endfor %}";
        let rendered = env.render_str(source, minijinja::context! { messages => vec![minijinja::context! { role => "user" }] });
        assert_eq!(rendered.unwrap(), "flat flat namespace loop remembered remembered remembered lazy lazy lazy lazy lazy lazy other");
    }

    #[test]
    fn constant_folding_is_sized_before_compiling() {
        let folding = |source: &str| {
            let whitespace = WhitespaceConfig { keep_trailing_newline: false, lstrip_blocks: true, trim_blocks: true };
            folding_bytes(&parse(source, NAME, SyntaxConfig, whitespace).unwrap())
        };
        assert!(folding("{{ 'ab' ~ 'cd' }}{{ x ~ ('<|im_start|>' + '\\n') }}") < 100);
        assert!(folding("{{ 'x' * 90000000 }}") >= 90_000_000);
        // Inside expressions that do not fold, the constant is folded once per level.
        assert!(folding("{{ a ~ (b ~ ('x' * 1000)) }}") >= 2000);
        // A count that is not a literal could be anything, and so could `a or b` of two kinds.
        assert_eq!(folding("{{ 'x' * (10 ** 9) }}"), usize::MAX);
        assert_eq!(folding("{{ 'ab' * (0 or 3) }}"), usize::MAX);
        assert!(folding("{{ ((0 or 'ab') + 'c') * 99999999 }}") >= 99_999_999);
    }

    #[test]
    fn guards_keep_jump_targets() {
        // Loops, conditions, `break`, and macros whose bodies start with a guarded instruction.
        let source = "{% macro m(x) %}{{ x ~ '!' }}{% endmacro %}{% for i in range(5) %}{% if i == 3 %}{% break %}{% endif %}{{ m(i) }}{{ 'a' if i is odd else 'b' }}{% endfor %}{{ m('end') }}";
        let context = json!({});
        assert_eq!(guarded(source, &context).0, unguarded(source, &context));
        assert_eq!(guarded(source, &context).0.unwrap(), "0!b1!a2!bend!");
    }
}
