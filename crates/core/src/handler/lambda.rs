//! The `lambda` handler: the hook's own functions, written in Rhai and run in a sandbox.
//!
//! Kong runs Lua functions here; Lua cannot run inside this filter, so the functions are Rhai
//! scripts (a small embeddable language in pure Rust that bounds every run). Each function is
//! a script compiled when the configuration loads. For one event, the functions run in order:
//! each sees the variables `data` (a map: the event data as the hook sees it, redacted, or the
//! map the previous function returned), `event` and `source` (strings), and the value of the
//! script is the next function's `data`: a map continues the chain, nothing (`()`) stops it
//! quietly, anything else is an error.
//!
//! The sandbox has no I/O of its own. It offers two functions: `log(value)`, a line in the
//! proxy's log, and `http(#{url: ..., ...})`, a call queued for delivery like a webhook's
//! (signed with the hook's `secret`). Those calls are the handler's only outputs: nothing is
//! delivered implicitly.
//!
//! Every run is bounded: operations per event, call depth, expression depth, the size of
//! strings, arrays and maps, variables, and `http`/`log` calls per event. A run that errs or
//! exceeds a bound stops the chain for that event, is counted, and is logged as a warning
//! (the 1st, 2nd, 4th, 8th... and every 10,000th error of a hook); the VM goes on.

pub mod heap;

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;

use rhai::packages::{
    BasicArrayPackage, BasicMapPackage, BasicStringPackage, CorePackage, LogicPackage,
    MoreStringPackage, Package,
};
use rhai::{
    AST, Array, Dynamic, Engine, EvalAltResult, Map, Module, ParseErrorType, Position, Scope,
    Shared,
};
use serde_json::{Number, Value};

use super::Output;
use super::endpoint::{self, Endpoint, Url};
use crate::config::reader::{Object, Problems, element, kind};
use crate::delivery::Call;
use crate::event::{Bodies, Event, Redaction};
use crate::log::Level;
use crate::signing::Signing;

use super::lambda_config::KEYS;
pub use super::lambda_config::{
    DEFAULT_MAX_OPERATIONS, MAX_FUNCTIONS, MAX_MAX_OPERATIONS, MAX_SOURCE_BYTES, MIN_MAX_OPERATIONS,
};
/// The keys of the map given to `http`.
const REQUEST_KEYS: &[&str] = &["url", "method", "headers", "body", "cluster"];

/// `http` and `log` calls one event may make, across the chain.
pub const MAX_CALLS: usize = 16;
/// Nested calls of script-defined functions.
pub const MAX_CALL_LEVELS: usize = 32;
/// Nesting of expressions and statements, at top level and inside functions.
pub const MAX_EXPR_DEPTH: usize = 32;
pub const MAX_FUNCTION_EXPR_DEPTH: usize = 16;
/// Bytes of text in one value (the strings of a map or array counted together).
pub const MAX_STRING_BYTES: usize = 262_144;
/// Heap bytes one event's run may hold (over what the heap held when it began), whatever
/// holds them: variables, map keys, outputs.
pub const MAX_MEMORY_BYTES: usize = 8 * 1_048_576;
/// Elements in one array, and properties in one map (nested ones counted together).
/// They also bound how deeply values nest, and so the stack that copying, measuring and
/// dropping them takes.
pub const MAX_ARRAY_SIZE: usize = 256;
pub const MAX_MAP_SIZE: usize = 512;
/// Variables alive at once, and functions a script may define.
pub const MAX_VARIABLES: usize = 256;
pub const MAX_SCRIPT_FUNCTIONS: usize = 64;
/// The longest line `log` writes (longer text is cut and marked).
pub const MAX_LOG_BYTES: usize = 4_096;
/// The deepest value converted to or from JSON, compared or written as text.
pub const MAX_DEPTH: usize = 32;

/// A configured `lambda` handler.
#[derive(Clone)]
pub struct Lambda {
    functions: Vec<Function>,
    sandbox: Rc<Sandbox>,
    pub signing: Signing,
    /// `config.retry`: what this hook changes of the global retry policy (of its `http` calls).
    pub retry: Option<crate::delivery::retry::Overrides>,
}

/// One compiled function, with its source (what configurations compare).
#[derive(Clone)]
struct Function {
    source: String,
    ast: AST,
}

/// The engine of one hook, and what its registered functions share with the handler.
struct Sandbox {
    engine: Engine,
    run: Rc<Run>,
    settings: Rc<Settings>,
    /// Runs that stopped on an error or an exceeded bound, since the configuration loaded.
    errors: Cell<u64>,
}

/// What is fixed when the configuration loads.
#[derive(Debug, PartialEq)]
struct Settings {
    /// Where log lines say they come from: the hook's path in the configuration.
    origin: String,
    cluster: Option<String>,
    max_operations: u64,
}

/// The state of the event being handled, shared with the functions registered in the engine.
/// Callbacks of one VM run one at a time, and registered functions never call back into a
/// script, so its cells are never borrowed twice (a failed borrow is an error, not a panic).
#[derive(Default)]
struct Run {
    outputs: RefCell<Vec<Output>>,
    calls: Cell<usize>,
    /// The function running, for log lines.
    function: Cell<usize>,
    /// Operations spent by the earlier functions of this event, and by the current one.
    spent: Cell<u64>,
    current: Cell<u64>,
    /// What the heap held when the event's run began.
    heap: Cell<usize>,
}

impl Run {
    fn reset(&self) {
        if let Ok(mut outputs) = self.outputs.try_borrow_mut() {
            outputs.clear();
        }
        self.calls.set(0);
        self.function.set(0);
        self.spent.set(0);
        self.current.set(0);
        self.heap.set(heap::held());
    }

    /// Counts one `http` or `log` call; an error past [`MAX_CALLS`].
    fn call(&self, name: &str) -> Result<(), Box<EvalAltResult>> {
        let calls = self.calls.get().saturating_add(1);
        self.calls.set(calls);
        if calls > MAX_CALLS {
            return Err(failure(
                name,
                format!("more than {MAX_CALLS} http and log calls in one event"),
            ));
        }
        Ok(())
    }

    fn push(&self, name: &str, output: Output) -> Result<(), Box<EvalAltResult>> {
        self.call(name)?;
        let mut outputs = self
            .outputs
            .try_borrow_mut()
            .map_err(|_| failure(name, "the handler is busy (re-entrant call)".to_string()))?;
        outputs.push(output);
        Ok(())
    }
}

/// An error raised by a registered function (`<name>: <why>` in messages). Rhai gives it the
/// position of the call.
fn failure(name: &str, why: String) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        Dynamic::from(Failure(format!("{name}: {why}"))),
        Position::NONE,
    ))
}

/// Why the progress callback stopped a run.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Budget {
    Operations,
    Memory,
}

/// What [`failure`] throws: told apart from a script's own `throw`.
#[derive(Debug, Clone)]
struct Failure(String);

thread_local! {
    /// Rhai's standard functions that the sandbox offers, built once per VM and shared by
    /// every lambda hook's engine. Left out: math (floating-point functions), bit fields,
    /// BLOBs and time.
    static PACKAGES: Vec<Shared<Module>> = vec![
        CorePackage::new().as_shared_module(),
        LogicPackage::new().as_shared_module(),
        BasicStringPackage::new().as_shared_module(),
        MoreStringPackage::new().as_shared_module(),
        BasicArrayPackage::new().as_shared_module(),
        BasicMapPackage::new().as_shared_module(),
    ];
}

impl Sandbox {
    fn new(settings: Settings) -> Sandbox {
        let run = Rc::new(Run::default());
        let settings = Rc::new(settings);
        let mut engine = Engine::new_raw();
        for package in PACKAGES.with(Clone::clone) {
            engine.register_global_module(package);
        }
        engine
            .set_max_operations(settings.max_operations)
            .set_max_call_levels(MAX_CALL_LEVELS)
            .set_max_expr_depths(MAX_EXPR_DEPTH, MAX_FUNCTION_EXPR_DEPTH)
            .set_max_string_size(MAX_STRING_BYTES)
            .set_max_array_size(MAX_ARRAY_SIZE)
            .set_max_map_size(MAX_MAP_SIZE)
            .set_max_variables(MAX_VARIABLES)
            .set_max_functions(MAX_SCRIPT_FUNCTIONS)
            .set_max_strings_interned(0);
        // No way out of the sandbox: no `eval` of new code, and nothing written to the host's
        // stdout (`log` writes to the proxy's log, within the call budget).
        for symbol in ["eval", "print", "debug"] {
            engine.disable_symbol(symbol);
        }
        // The operation budget is per event, across the chain: the engine counts per function.
        let budget = settings.max_operations;
        let progress = Rc::clone(&run);
        engine.on_progress(move |operations| {
            progress.current.set(operations);
            if progress.spent.get().saturating_add(operations) > budget {
                return Some(Dynamic::from(Budget::Operations));
            }
            // A wrapping difference: a count below the start reads as huge, and is not over.
            let held = heap::held().wrapping_sub(progress.heap.get());
            (held > MAX_MEMORY_BYTES && held < usize::MAX / 2)
                .then(|| Dynamic::from(Budget::Memory))
        });
        let log_run = Rc::clone(&run);
        let log_settings = Rc::clone(&settings);
        engine.register_fn("log", move |value: Dynamic| {
            let text = text_of(&value);
            let line = format!(
                "lambda {}.config.functions[{}]: {}",
                log_settings.origin,
                log_run.function.get(),
                clean(&text, MAX_LOG_BYTES)
            );
            log_run.push("log", Output::Log(Level::Info, line))
        });
        // Rhai compares and writes arrays and maps by calling back into its engine for every
        // level of nesting, at a stack cost per level that a wasm VM cannot afford for values
        // nested hundreds deep: these replace them (the engine's own functions come first).
        engine
            .register_fn("==", |a: &mut Array, b: Array| equal_arrays(a, &b, 0))
            .register_fn("!=", |a: &mut Array, b: Array| {
                equal_arrays(a, &b, 0).map(|same| !same)
            })
            .register_fn("==", |a: &mut Map, b: Map| equal_maps(a, &b, 0))
            .register_fn("!=", |a: &mut Map, b: Map| {
                equal_maps(a, &b, 0).map(|same| !same)
            });
        for name in ["to_string", "to_debug", "print", "debug"] {
            engine
                .register_fn(name, |items: &mut Array| {
                    let mut out = String::new();
                    show_array(items, 0, &mut out);
                    out
                })
                .register_fn(name, |map: &mut Map| {
                    let mut out = String::new();
                    show_map(map, 0, &mut out);
                    out
                });
        }
        let http_run = Rc::clone(&run);
        let http_settings = Rc::clone(&settings);
        engine.register_fn("http", move |request: Map| {
            let draft = draft(&request, http_settings.cluster.as_deref())
                .map_err(|why| failure("http", why))?;
            http_run.push("http", Output::Call(draft))
        });
        Sandbox {
            engine,
            run,
            settings,
            errors: Cell::new(0),
        }
    }
}

impl Lambda {
    /// Reads a `lambda` handler's `config` object at `path` (`hooks[N].config`), compiling
    /// every function.
    pub fn parse(value: &Value, path: &str, problems: &Problems) -> Option<Lambda> {
        let config = Object::new_in(value, path, &[KEYS, super::endpoint::CALL_KEYS], problems)?;
        let signing = Signing::parse(&config, problems);
        let cluster = match config.optional_str("cluster") {
            Some("") => {
                problems.add(&config.path_of("cluster"), "must not be empty");
                None
            }
            other => other.map(str::to_string),
        };
        let max_operations =
            config.whole(super::lambda_config::MAX_OPERATIONS, DEFAULT_MAX_OPERATIONS);
        let sources = read_sources(&config, problems)?;
        let origin = path.strip_suffix(".config").unwrap_or(path).to_string();
        let sandbox = Sandbox::new(Settings {
            origin,
            cluster,
            max_operations,
        });
        let functions_path = config.path_of("functions");
        let mut functions = Vec::with_capacity(sources.len());
        for (index, source) in sources.into_iter().enumerate() {
            match sandbox.engine.compile(source) {
                Ok(ast) => functions.push(Function {
                    source: source.to_string(),
                    ast,
                }),
                Err(error) => problems.add(
                    &element(&functions_path, index),
                    format!(
                        "syntax error{}: {}",
                        at(error.position()),
                        syntax(error.err_type())
                    ),
                ),
            }
        }
        let retry = super::endpoint::parse_retry(&config, problems);
        Some(Lambda {
            functions,
            sandbox: Rc::new(sandbox),
            signing,
            retry,
        })
    }

    /// Runs the chain for the event in `bodies`, as a hook with `redaction` sees it: the
    /// outputs are the `log` and `http` calls made, and a warning if a function failed.
    pub fn prepare(&self, bodies: &mut Bodies<'_>, redaction: &Redaction) -> Vec<Output> {
        let sandbox = &*self.sandbox;
        sandbox.run.reset();
        let failed = self.chain(bodies.event(), redaction).err();
        let mut outputs = match sandbox.run.outputs.try_borrow_mut() {
            Ok(mut outputs) => std::mem::take(&mut *outputs),
            Err(_) => Vec::new(),
        };
        if let Some((index, why)) = failed {
            let errors = sandbox.errors.get().saturating_add(1);
            sandbox.errors.set(errors);
            if errors.is_power_of_two() || errors % 10_000 == 0 {
                outputs.push(Output::Log(
                    Level::Warn,
                    format!(
                        "lambda {}.config.functions[{index}] stopped: {why} (error {errors} of this hook; the 1st, 2nd, 4th... and every 10,000th are logged)",
                        sandbox.settings.origin
                    ),
                ));
            }
        }
        outputs
    }

    /// Runs the functions in order until one returns nothing; on an error, which function
    /// failed and why.
    fn chain(&self, event: &Event, redaction: &Redaction) -> Result<(), (usize, String)> {
        let sandbox = &*self.sandbox;
        let run = &*sandbox.run;
        let mut data =
            to_dynamic(&event.data_for(redaction), 0, &mut Sizes::default()).map_err(|why| {
                (
                    0,
                    format!("the event data is too large for the sandbox: {why}"),
                )
            })?;
        for (index, function) in self.functions.iter().enumerate() {
            run.function.set(index);
            run.current.set(0);
            let mut scope = Scope::new();
            scope.push("data", data);
            scope.push_constant("event", event.name.clone());
            scope.push_constant("source", event.source.name());
            let result = sandbox
                .engine
                .eval_ast_with_scope::<Dynamic>(&mut scope, &function.ast);
            run.spent
                .set(run.spent.get().saturating_add(run.current.get()));
            match result {
                Ok(value) if value.is_unit() => return Ok(()),
                Ok(value) if value.is_map() => data = value,
                Ok(value) => {
                    return Err((
                        index,
                        format!(
                            "returned a value of type {}; a function returns a map (the next data) or nothing (to stop)",
                            value.type_name()
                        ),
                    ));
                }
                Err(error) => return Err((index, runtime(&error, &sandbox.settings))),
            }
        }
        Ok(())
    }

    /// Runs that stopped on an error or an exceeded bound since the configuration loaded.
    pub fn errors(&self) -> u64 {
        self.sandbox.errors.get()
    }
}

impl fmt::Debug for Lambda {
    // Sources are not printed: they may hold literals as sensitive as a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lambda")
            .field("functions", &self.functions.len())
            .field("settings", &self.sandbox.settings)
            .field("signing", &self.signing)
            .finish()
    }
}

impl PartialEq for Lambda {
    fn eq(&self, other: &Self) -> bool {
        self.signing == other.signing
            && self.retry == other.retry
            && self.sandbox.settings == other.sandbox.settings
            && self.functions.len() == other.functions.len()
            && self
                .functions
                .iter()
                .zip(&other.functions)
                .all(|(a, b)| a.source == b.source)
    }
}

/// Reads `functions`: a non-empty list of at most [`MAX_FUNCTIONS`] non-empty strings.
fn read_sources<'a>(config: &Object<'a, '_>, problems: &Problems) -> Option<Vec<&'a str>> {
    let path = config.path_of("functions");
    let value = config.required("functions")?;
    let Value::Array(items) = value else {
        problems.add(
            &path,
            format!(
                "expected a list of functions (strings of Rhai), found {}",
                kind(value)
            ),
        );
        return None;
    };
    if items.is_empty() || items.len() > MAX_FUNCTIONS {
        problems.add(&path, format!("must hold 1 to {MAX_FUNCTIONS} functions"));
        return None;
    }
    let mut sources = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let here = element(&path, index);
        match item {
            Value::String(source) if source.trim().is_empty() => {
                problems.add(&here, "must not be empty")
            }
            Value::String(source) if source.len() > MAX_SOURCE_BYTES => {
                problems.add(&here, format!("is longer than {MAX_SOURCE_BYTES} bytes"))
            }
            Value::String(source) => sources.push(source.as_str()),
            other => problems.add(
                &here,
                format!("expected a string of Rhai, found {}", kind(other)),
            ),
        }
    }
    (sources.len() == items.len()).then_some(sources)
}

/// ` at line L, column C`, or nothing when the position is unknown.
fn at(position: Position) -> String {
    match (position.line(), position.position()) {
        (Some(line), Some(column)) => format!(" at line {line}, column {column}"),
        (Some(line), None) => format!(" at line {line}"),
        _ => String::new(),
    }
}

/// A syntax error, described without quoting the script (which may hold secrets).
fn syntax(error: &ParseErrorType) -> String {
    use rhai::LexError;
    let text = match error {
        ParseErrorType::UnexpectedEOF => "the script ends unexpectedly",
        ParseErrorType::BadInput(LexError::UnterminatedString) => "unterminated string",
        ParseErrorType::BadInput(LexError::StringTooLong(_)) => "string literal too long",
        ParseErrorType::BadInput(LexError::MalformedEscapeSequence(_)) => "invalid escape sequence",
        ParseErrorType::BadInput(LexError::MalformedNumber(_)) => "invalid number",
        ParseErrorType::BadInput(LexError::MalformedChar(_)) => "invalid character literal",
        ParseErrorType::BadInput(LexError::MalformedIdentifier(_)) => "invalid name",
        ParseErrorType::BadInput(LexError::UnexpectedInput(token))
            if !token.is_empty()
                && token.len() <= 3
                && token.bytes().all(|b| b.is_ascii_punctuation()) =>
        {
            return format!("unexpected '{token}'");
        }
        ParseErrorType::BadInput(LexError::ImproperSymbol(symbol, why))
            if why.contains("disabled") =>
        {
            return format!("'{}' is not available in this sandbox", clean(symbol, 16));
        }
        ParseErrorType::BadInput(_) => "unexpected input",
        ParseErrorType::UnknownOperator(_) => "unknown operator",
        ParseErrorType::MissingToken(token, _) => {
            return format!("expected '{}'", clean(token, 16));
        }
        ParseErrorType::MissingSymbol(_) => "a symbol is missing",
        ParseErrorType::MalformedIndexExpr(_) => "invalid indexing",
        ParseErrorType::DuplicatedProperty(_) => "a property is defined twice in a map literal",
        ParseErrorType::DuplicatedVariable(_) | ParseErrorType::VariableExists(_) => {
            "a variable is defined twice"
        }
        ParseErrorType::PropertyExpected => "a property name is expected",
        ParseErrorType::VariableExpected => "a variable name is expected",
        ParseErrorType::ForbiddenVariable(_) => "a variable name is not allowed",
        ParseErrorType::Reserved(word) => {
            return format!("'{}' is a reserved word", clean(word, 16));
        }
        ParseErrorType::MismatchedType(..) => "mismatched types",
        ParseErrorType::ExprExpected(_) => "an expression is expected",
        ParseErrorType::FnDuplicatedDefinition(..) => "a function is defined twice",
        ParseErrorType::FnMissingName => "a function name is expected",
        ParseErrorType::FnMissingParams(_) => "a function's parameters are expected",
        ParseErrorType::FnDuplicatedParam(..) => "a function parameter is named twice",
        ParseErrorType::FnMissingBody(_) => "a function body is expected",
        ParseErrorType::AssignmentToConstant(_) => "assignment to a constant",
        ParseErrorType::AssignmentToInvalidLHS(_) => "invalid left side of an assignment",
        ParseErrorType::VariableUndefined(_) => "undefined variable",
        ParseErrorType::ExprTooDeep => {
            return format!(
                "expressions nested too deeply (at most {MAX_EXPR_DEPTH} levels, {MAX_FUNCTION_EXPR_DEPTH} inside functions)"
            );
        }
        ParseErrorType::TooManyFunctions => {
            return format!("more than {MAX_SCRIPT_FUNCTIONS} functions defined");
        }
        ParseErrorType::LiteralTooLarge(what, max) => {
            return format!("{} literal larger than {max}", clean(what, 32));
        }
        ParseErrorType::LoopBreak => "break or continue outside a loop",
        _ => "invalid syntax",
    };
    text.to_string()
}

/// A runtime error, described without quoting values from the event.
fn runtime(error: &EvalAltResult, settings: &Settings) -> String {
    let mut error = error;
    let mut inside = Vec::new();
    while let EvalAltResult::ErrorInFunctionCall(name, _, inner, _) = error {
        inside.push(clean(name, 64));
        error = inner;
    }
    let text = match error {
        EvalAltResult::ErrorTerminated(why, _)
            if why
                .read_lock::<Budget>()
                .is_some_and(|why| *why == Budget::Memory) =>
        {
            format!(
                "memory budget exceeded ({} MiB per event)",
                MAX_MEMORY_BYTES / 1_048_576
            )
        }
        EvalAltResult::ErrorTooManyOperations(_) | EvalAltResult::ErrorTerminated(..) => format!(
            "operation budget exceeded (max_operations {} per event)",
            settings.max_operations
        ),
        EvalAltResult::ErrorStackOverflow(_) => {
            format!("calls nested too deeply (at most {MAX_CALL_LEVELS} levels)")
        }
        EvalAltResult::ErrorTooManyVariables(_) => {
            format!("more than {MAX_VARIABLES} variables")
        }
        EvalAltResult::ErrorDataTooLarge(what, _) => match what.as_str() {
            "Length of string" => {
                format!(
                    "a string over {MAX_STRING_BYTES} bytes (a value's strings counted together)"
                )
            }
            "Size of object map" => {
                format!("a map over {MAX_MAP_SIZE} properties (nested ones counted together)")
            }
            _ => format!("an array over {MAX_ARRAY_SIZE} elements (nested ones counted together)"),
        },
        EvalAltResult::ErrorRuntime(value, _) => match value.read_lock::<Failure>() {
            Some(failure) => failure.0.clone(),
            None => format!("thrown: {}", clean(&text_of(value), 256)),
        },
        EvalAltResult::ErrorArithmetic(what, _) => {
            // Rhai's message goes on with the operands (values from the event): keep its kind.
            let kind = what.split(':').next().unwrap_or("");
            format!("arithmetic error: {}", clean(kind, 64))
        }
        EvalAltResult::ErrorFunctionNotFound(signature, _) => {
            format!("function not found: {}", clean(signature, 128))
        }
        EvalAltResult::ErrorVariableNotFound(name, _) => {
            format!("variable not found: {}", clean(name, 64))
        }
        EvalAltResult::ErrorPropertyNotFound(name, _) => {
            format!("property not found: {}", clean(name, 64))
        }
        EvalAltResult::ErrorIndexNotFound(..) => "index not found".to_string(),
        EvalAltResult::ErrorMismatchDataType(expected, actual, _)
        | EvalAltResult::ErrorMismatchOutputType(expected, actual, _) => format!(
            "wrong type: {} where {} is expected",
            clean(actual, 64),
            clean(expected, 64)
        ),
        EvalAltResult::ErrorIndexingType(what, _) => {
            format!("cannot index {}", clean(what, 64))
        }
        EvalAltResult::ErrorArrayBounds(..) => "array index out of bounds".to_string(),
        EvalAltResult::ErrorStringBounds(..) => "string index out of bounds".to_string(),
        EvalAltResult::ErrorBitFieldBounds(..) => "bit index out of bounds".to_string(),
        EvalAltResult::ErrorFor(_) => "for loop over something not iterable".to_string(),
        EvalAltResult::ErrorAssignmentToConstant(name, _) => {
            format!("cannot modify constant {}", clean(name, 64))
        }
        EvalAltResult::ErrorNonPureMethodCallOnConstant(..) => {
            "cannot modify a constant".to_string()
        }
        EvalAltResult::ErrorDotExpr(..) => "invalid property access".to_string(),
        _ => "runtime error".to_string(),
    };
    let mut text = format!("{text}{}", at(error.position()));
    for name in inside.iter().rev() {
        text.push_str(&format!(" in function {name}"));
    }
    text
}

/// `text` for a log line: control characters replaced by spaces, at most `max` bytes (cut at
/// a character boundary and marked).
fn clean(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for c in text.chars() {
        if out.len() + c.len_utf8() > max {
            out.push_str("...[truncated]");
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

/// What a value holds, counted as Rhai's limits count it (nested values included).
#[derive(Default)]
struct Sizes {
    arrays: usize,
    maps: usize,
    strings: usize,
}

/// JSON to Rhai: objects become maps, arrays arrays, `null` nothing (`()`). Numbers stay
/// integers when they fit an `i64`, else floats. Refused past the sandbox's limits.
fn to_dynamic(value: &Value, depth: usize, sizes: &mut Sizes) -> Result<Dynamic, String> {
    if depth > MAX_DEPTH {
        return Err(format!("it is nested deeper than {MAX_DEPTH} levels"));
    }
    Ok(match value {
        Value::Null => Dynamic::UNIT,
        Value::Bool(flag) => Dynamic::from_bool(*flag),
        Value::Number(number) => match number.as_i64() {
            Some(integer) => Dynamic::from_int(integer),
            None => Dynamic::from_float(number.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(text) => {
            sizes.strings = sizes.strings.saturating_add(text.len());
            if sizes.strings > MAX_STRING_BYTES {
                return Err(format!("its strings hold over {MAX_STRING_BYTES} bytes"));
            }
            Dynamic::from(text.clone())
        }
        Value::Array(items) => {
            sizes.arrays = sizes.arrays.saturating_add(items.len());
            if sizes.arrays > MAX_ARRAY_SIZE {
                return Err(format!("its arrays hold over {MAX_ARRAY_SIZE} elements"));
            }
            let items = items
                .iter()
                .map(|item| to_dynamic(item, depth + 1, sizes))
                .collect::<Result<_, _>>()?;
            Dynamic::from_array(items)
        }
        Value::Object(map) => {
            sizes.maps = sizes.maps.saturating_add(map.len());
            if sizes.maps > MAX_MAP_SIZE {
                return Err(format!("its maps hold over {MAX_MAP_SIZE} properties"));
            }
            let map = map
                .iter()
                .map(|(key, item)| Ok((key.as_str().into(), to_dynamic(item, depth + 1, sizes)?)))
                .collect::<Result<_, String>>()?;
            Dynamic::from_map(map)
        }
    })
}

/// Rhai's `==`, without Rhai's recursion through its engine for arrays and maps (whose
/// stack cost per level of nesting is large): values nested deeper than [`MAX_DEPTH`] are an
/// error. Numbers compare by value (`1 == 1.0`); other values of different types differ.
fn equal(a: &Dynamic, b: &Dynamic, depth: usize) -> Result<bool, Box<EvalAltResult>> {
    if let (Ok(a), Ok(b)) = (a.as_array_ref(), b.as_array_ref()) {
        return equal_arrays(&a, &b, depth);
    }
    if let (Ok(a), Ok(b)) = (a.as_map_ref(), b.as_map_ref()) {
        return equal_maps(&a, &b, depth);
    }
    Ok(match (a.as_int(), b.as_int(), a.as_float(), b.as_float()) {
        (Ok(a), Ok(b), ..) => a == b,
        (Ok(a), _, _, Ok(b)) => (a as f64) == b,
        (_, Ok(b), Ok(a), _) => a == (b as f64),
        (_, _, Ok(a), Ok(b)) => a == b,
        _ => match (a.as_immutable_string_ref(), b.as_immutable_string_ref()) {
            (Ok(a), Ok(b)) => *a == *b,
            _ => match (a.as_bool(), b.as_bool(), a.as_char(), b.as_char()) {
                (Ok(a), Ok(b), ..) => a == b,
                (_, _, Ok(a), Ok(b)) => a == b,
                _ => a.is_unit() && b.is_unit(),
            },
        },
    })
}

fn too_deep(depth: usize) -> Result<(), Box<EvalAltResult>> {
    if depth > MAX_DEPTH {
        return Err(failure(
            "==",
            format!("values nested deeper than {MAX_DEPTH} levels"),
        ));
    }
    Ok(())
}

fn equal_arrays(a: &Array, b: &Array, depth: usize) -> Result<bool, Box<EvalAltResult>> {
    too_deep(depth)?;
    if a.len() != b.len() {
        return Ok(false);
    }
    for (a, b) in a.iter().zip(b.iter()) {
        if !equal(a, b, depth + 1)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn equal_maps(a: &Map, b: &Map, depth: usize) -> Result<bool, Box<EvalAltResult>> {
    too_deep(depth)?;
    if a.len() != b.len() {
        return Ok(false);
    }
    for (key, a) in a.iter() {
        match b.get(key) {
            Some(b) if equal(a, b, depth + 1)? => {}
            _ => return Ok(false),
        }
    }
    Ok(true)
}

/// A value as Rhai's `to_debug` writes it (`[1, "a", #{"k": ()}]`), without Rhai's recursion
/// through its engine: values nested deeper than [`MAX_DEPTH`] are written `...`.
fn show(value: &Dynamic, depth: usize, out: &mut String) {
    use std::fmt::Write as _;
    // Writing to a String cannot fail.
    if let Ok(items) = value.as_array_ref() {
        show_array(&items, depth, out);
    } else if let Ok(map) = value.as_map_ref() {
        show_map(&map, depth, out);
    } else if let Ok(text) = value.as_immutable_string_ref() {
        let _ = write!(out, "{:?}", text.as_str());
    } else if let Ok(c) = value.as_char() {
        let _ = write!(out, "{c:?}");
    } else if value.is_unit() {
        out.push_str("()");
    } else {
        let _ = write!(out, "{value}");
    }
}

fn show_array(items: &Array, depth: usize, out: &mut String) {
    if depth > MAX_DEPTH {
        out.push_str("[...]");
        return;
    }
    out.push('[');
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            out.push_str(", ");
        }
        show(item, depth + 1, out);
    }
    out.push(']');
}

fn show_map(map: &Map, depth: usize, out: &mut String) {
    if depth > MAX_DEPTH {
        out.push_str("#{...}");
        return;
    }
    out.push_str("#{");
    for (index, (key, item)) in map.iter().enumerate() {
        if index > 0 {
            out.push_str(", ");
        }
        out.push_str(&format!("{:?}: ", key.as_str()));
        show(item, depth + 1, out);
    }
    out.push('}');
}

/// A value as text: a string is itself, anything else is written as [`show`] does.
fn text_of(value: &Dynamic) -> String {
    if let Ok(text) = value.as_immutable_string_ref() {
        return text.to_string();
    }
    let mut out = String::new();
    show(value, 0, &mut out);
    out
}

/// Rhai to JSON: maps become objects, arrays arrays, nothing `null`, characters strings.
/// Floats that are not finite become `null`. Other types are refused.
fn to_json(value: &Dynamic, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!("nested deeper than {MAX_DEPTH} levels"));
    }
    if value.is_unit() {
        return Ok(Value::Null);
    }
    if let Ok(flag) = value.as_bool() {
        return Ok(Value::Bool(flag));
    }
    if let Ok(integer) = value.as_int() {
        return Ok(Value::Number(integer.into()));
    }
    if let Ok(float) = value.as_float() {
        return Ok(Number::from_f64(float).map_or(Value::Null, Value::Number));
    }
    if let Ok(c) = value.as_char() {
        return Ok(Value::String(c.to_string()));
    }
    if let Ok(text) = value.as_immutable_string_ref() {
        return Ok(Value::String(text.to_string()));
    }
    if let Ok(items) = value.as_array_ref() {
        return items
            .iter()
            .map(|item| to_json(item, depth + 1))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array);
    }
    if let Ok(map) = value.as_map_ref() {
        return map
            .iter()
            .map(|(key, item)| Ok((key.to_string(), to_json(item, depth + 1)?)))
            .collect::<Result<serde_json::Map<_, _>, String>>()
            .map(Value::Object);
    }
    Err(format!(
        "a value of type {} has no JSON form",
        value.type_name()
    ))
}

/// The call `http` asked for, checked as a webhook's configuration is.
fn draft(request: &Map, cluster: Option<&str>) -> Result<Call, String> {
    if let Some(key) = request
        .keys()
        .find(|key| !REQUEST_KEYS.contains(&key.as_str()))
    {
        return Err(format!(
            "unknown key '{}'; expected one of: {}",
            clean(key, 32),
            REQUEST_KEYS.join(", ")
        ));
    }
    let text = |key: &str| -> Result<Option<String>, String> {
        match request.get(key) {
            None => Ok(None),
            Some(value) if value.is_unit() => Ok(None),
            Some(value) => value
                .as_immutable_string_ref()
                .map(|text| Some(text.to_string()))
                .map_err(|actual| format!("{key} must be a string, not {actual}")),
        }
    };
    let url = text("url")?.ok_or_else(|| "url is required".to_string())?;
    let url = Url::parse(&url).map_err(|why| format!("url {why}"))?;
    let method = text("method")?.unwrap_or_else(|| "POST".to_string());
    if method.is_empty() || method.len() > 32 || !method.bytes().all(endpoint::is_token_byte) {
        return Err("method must be an HTTP method such as POST".to_string());
    }
    let cluster = match text("cluster")? {
        Some(name) if name.is_empty() => return Err("cluster must not be empty".to_string()),
        Some(name) => name,
        None => cluster.map_or_else(|| url.host.clone(), str::to_string),
    };
    let mut headers = request_headers(request.get("headers"))?;
    let (body, content_type) = match request.get("body") {
        None => (Vec::new(), None),
        Some(value) if value.is_unit() => (Vec::new(), None),
        Some(value) => match value.as_immutable_string_ref() {
            Ok(text) => (text.as_bytes().to_vec(), Some("text/plain; charset=utf-8")),
            Err(_) => {
                let json = to_json(value, 0).map_err(|why| format!("body: {why}"))?;
                // Serializing a serde_json::Value to a Vec cannot fail.
                let bytes = serde_json::to_vec(&json).unwrap_or_default();
                (bytes, Some("application/json"))
            }
        },
    };
    if let Some(content_type) = content_type {
        if !headers.iter().any(|(name, _)| name == "content-type") {
            headers.push(("content-type".to_string(), content_type.to_string()));
        }
    }
    let endpoint = Endpoint {
        cluster,
        url,
        ssl_verify: false,
    };
    Ok(Call {
        destination: endpoint.destination(),
        method,
        path: endpoint.url.path.clone(),
        authority: endpoint.url.authority(),
        headers,
        body: body.into(),
    })
}

/// `headers` of an `http` request: a map of names to strings (numbers and booleans are
/// written as text). Names are sent lowercase; reserved ones are refused, except
/// `content-type`, which a lambda may set.
fn request_headers(value: Option<&Dynamic>) -> Result<Vec<(String, String)>, String> {
    let Some(value) = value.filter(|value| !value.is_unit()) else {
        return Ok(Vec::new());
    };
    let map = value
        .as_map_ref()
        .map_err(|actual| format!("headers must be a map, not {actual}"))?;
    let mut headers = Vec::with_capacity(map.len());
    for (name, value) in map.iter() {
        let lower = name.to_ascii_lowercase();
        let shown = clean(&lower, 64);
        if lower.is_empty() || !lower.bytes().all(endpoint::is_token_byte) {
            return Err(format!("headers: '{shown}' is not a valid header name"));
        }
        if lower != "content-type" && endpoint::is_reserved(&lower) {
            return Err(format!("headers: '{shown}' is set by the handler"));
        }
        let text = if value.is_string() || value.is_int() || value.is_float() || value.is_bool() {
            value.to_string()
        } else {
            return Err(format!(
                "headers: '{shown}' must be a string, not {}",
                value.type_name()
            ));
        };
        if !endpoint::header_value_ok(&text) {
            return Err(format!(
                "headers: '{shown}' must not contain control characters such as CR or LF"
            ));
        }
        headers.push((lower, text));
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::event::Event;
    use crate::handler::Handler;
    use crate::source::Source;
    use serde_json::json;
    use std::time::Instant;

    fn parse(config: Value) -> Result<Lambda, Vec<String>> {
        let problems = Problems::default();
        let lambda = Lambda::parse(&config, "hooks[0].config", &problems);
        if problems.is_empty() {
            Ok(lambda.unwrap())
        } else {
            Err(problems.into_vec().iter().map(|p| p.to_string()).collect())
        }
    }

    fn lambda(functions: &[&str]) -> Lambda {
        parse(json!({"functions": functions})).unwrap()
    }

    fn event(data: Value) -> Event {
        Event::new(
            Source::Traffic,
            "request",
            data.as_object().unwrap().clone(),
        )
    }

    fn traffic() -> Event {
        event(json!({
            "request": {"method": "GET", "path": "/orders/7", "host": "shop",
                        "headers": {"authorization": "Bearer s3cr3t", "x-team": "payments"}},
            "response": {"status": 503, "flags": "UF", "headers": {"content-type": "text/plain"}},
            "latency_ms": 12,
            "route": "orders"
        }))
    }

    fn run(lambda: &Lambda, event: &Event) -> Vec<Output> {
        lambda.prepare(&mut Bodies::new(event), &Redaction::default())
    }

    fn lines(outputs: &[Output]) -> Vec<(Level, String)> {
        outputs
            .iter()
            .map(|output| match output {
                Output::Log(level, line) => (*level, line.clone()),
                Output::Call(draft) => panic!("unexpected draft {draft:?}"),
            })
            .collect()
    }

    fn drafts(outputs: Vec<Output>) -> Vec<Call> {
        outputs
            .into_iter()
            .filter_map(|output| match output {
                Output::Call(draft) => Some(draft),
                Output::Log(..) => None,
            })
            .collect()
    }

    /// The warning of a stopped run.
    fn stopped(outputs: &[Output]) -> String {
        match outputs.last() {
            Some(Output::Log(Level::Warn, line)) => line.clone(),
            other => panic!("expected a warning last, got {other:?}"),
        }
    }

    #[test]
    fn each_function_gets_the_data_the_previous_one_returned() {
        let lambda = lambda(&[
            r#"data.status = data.response.status; data.seen = [event, source]; data"#,
            r#"log(`${data.status} ${data.seen} ${data.request.headers.authorization}`);
               let next = #{status: data.status + 1}; next"#,
            r#"log(data.status); log(data.response); data"#,
        ]);
        let outputs = run(&lambda, &traffic());
        assert_eq!(
            lines(&outputs),
            vec![
                (
                    Level::Info,
                    r#"lambda hooks[0].config.functions[1]: 503 ["request", "traffic"] [redacted]"#
                        .to_string()
                ),
                (
                    Level::Info,
                    "lambda hooks[0].config.functions[2]: 504".to_string()
                ),
                (
                    Level::Info,
                    "lambda hooks[0].config.functions[2]: ()".to_string()
                ),
            ]
        );
        assert_eq!(lambda.errors(), 0);
    }

    /// The example of the README, as written there.
    #[test]
    fn the_readme_example() {
        let lambda = parse(json!({"secret": "change-me", "cluster": "receiver", "functions": [
            "if data.response.status < 500 { return; }\n#{status: data.response.status, path: data.request.path, team: data.request.headers[\"x-team\"]}",
            "data.text = `${data.path} answered ${data.status}`;\nhttp(#{url: \"http://receiver:9000/alerts\", body: data});\nlog(\"alert sent for \" + data.path);"
        ]}))
        .unwrap();
        let outputs = run(&lambda, &traffic());
        assert_eq!(outputs.len(), 2);
        let Some(Output::Call(draft)) = outputs.first() else {
            panic!("{outputs:?}")
        };
        assert_eq!(
            std::str::from_utf8(&draft.body).unwrap(),
            r#"{"path":"/orders/7","status":503,"team":"payments","text":"/orders/7 answered 503"}"#
        );
        assert_eq!(draft.destination.cluster, "receiver");
        // A script's value is its last statement's, semicolon or not.
        let ends = self::lambda(&["data;", r#"log("reached"); data.x = 1;"#, r#"log("never")"#]);
        assert_eq!(lines(&run(&ends, &traffic())).len(), 1);
    }

    #[test]
    fn returning_nothing_stops_the_chain_quietly() {
        let lambda = lambda(&[
            r#"if data.response.status < 500 { return; } data"#,
            r#"log("5xx"); ()"#,
            r#"log("never"); data"#,
        ]);
        let ok = event(json!({"response": {"status": 200}}));
        assert!(run(&lambda, &ok).is_empty());
        assert_eq!(lines(&run(&lambda, &traffic())).len(), 1);
        assert_eq!(lambda.errors(), 0);
    }

    #[test]
    fn a_runtime_error_stops_the_chain_and_is_counted() {
        let lambda = lambda(&[
            "log(\"before\");\nlet x = 1;\n  throw \"boom \" + data.latency_ms;",
            r#"log("never"); data"#,
        ]);
        let outputs = run(&lambda, &traffic());
        assert_eq!(outputs.len(), 2);
        assert_eq!(
            stopped(&outputs),
            "lambda hooks[0].config.functions[0] stopped: thrown: boom 12 at line 3, column 3 (error 1 of this hook; the 1st, 2nd, 4th... and every 10,000th are logged)"
        );
        assert_eq!(lambda.errors(), 1);
        // Errors are counted every time and logged at 1, 2, 4, 8...
        let logged: Vec<usize> = (2..=9)
            .filter(|_| {
                run(&lambda, &traffic())
                    .iter()
                    .any(|output| matches!(output, Output::Log(Level::Warn, _)))
            })
            .collect();
        assert_eq!(lambda.errors(), 9);
        assert_eq!(logged.len(), 3);

        let wrong = self::lambda(&["42"]);
        assert!(stopped(&run(&wrong, &traffic())).contains(
            "stopped: returned a value of type i64; a function returns a map (the next data) or nothing (to stop)"
        ));
        let missing = self::lambda(&["data.nothing.deeper"]);
        assert!(stopped(&run(&missing, &traffic())).contains("at line 1, column"));
        let unknown = self::lambda(&["fn f(x) { x.nope() } f(1)"]);
        assert!(
            stopped(&run(&unknown, &traffic()))
                .contains("function not found: nope (i64) at line 1, column 13 in function f")
        );
    }

    #[test]
    fn syntax_errors_fail_the_configuration_with_their_path_and_position() {
        let config = json!({"hooks": [{"source": "traffic", "handler": "lambda", "config": {
            "functions": ["data", "let secret = \"hunter2\";\nlet x = ;", 7, ""]
        }}]});
        let errors: Vec<String> = config::parse(config.to_string().as_bytes())
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errors,
            vec![
                "hooks[0].config.functions[2]: expected a string of Rhai, found a number",
                "hooks[0].config.functions[3]: must not be empty",
            ]
        );
        let config = json!({"hooks": [{"source": "traffic", "handler": "lambda", "config": {
            "functions": ["data", "let secret = \"hunter2\";\nlet x = ;", "eval(\"1\")", "\"hunter2"]
        }}]});
        let errors: Vec<String> = config::parse(config.to_string().as_bytes())
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errors,
            vec![
                "hooks[0].config.functions[1]: syntax error at line 2, column 9: unexpected ';'",
                "hooks[0].config.functions[2]: syntax error at line 1, column 1: 'eval' is not available in this sandbox",
                "hooks[0].config.functions[3]: syntax error at line 1, column 1: unterminated string",
            ]
        );
        assert!(!errors.iter().any(|line| line.contains("hunter2")));
    }

    #[test]
    fn configuration_errors_name_their_paths() {
        assert_eq!(
            parse(json!({"function": "x"})).unwrap_err(),
            vec![
                "hooks[0].config.function: unknown field; expected one of: functions, cluster, max_operations, secret, secrets, secret_env, secrets_env, signature, retry",
                "hooks[0].config.functions: missing required field",
            ]
        );
        assert_eq!(
            parse(json!({"functions": [], "cluster": "", "secret": "", "max_operations": 10}))
                .unwrap_err(),
            vec![
                "hooks[0].config.secret: must not be empty; remove it to send unsigned deliveries",
                "hooks[0].config.cluster: must not be empty",
                "hooks[0].config.max_operations: must be between 1000 and 1000000",
                "hooks[0].config.functions: must hold 1 to 16 functions",
            ]
        );
        assert_eq!(
            parse(json!({"functions": "data"})).unwrap_err(),
            vec![
                "hooks[0].config.functions: expected a list of functions (strings of Rhai), found a string"
            ]
        );
        let long = "1;".repeat(MAX_SOURCE_BYTES);
        assert_eq!(
            parse(json!({"functions": [long]})).unwrap_err(),
            vec!["hooks[0].config.functions[0]: is longer than 65536 bytes"]
        );
        let deep = format!("{}1{}", "(".repeat(100), ")".repeat(100));
        assert_eq!(
            parse(json!({"functions": [deep]})).unwrap_err(),
            vec![
                "hooks[0].config.functions[0]: syntax error at line 1, column 16: expressions nested too deeply (at most 32 levels, 16 inside functions)"
            ]
        );
    }

    #[test]
    fn a_loop_that_never_ends_is_stopped_by_the_operation_budget() {
        let lambda = lambda(&["loop { }"]);
        let start = Instant::now();
        let outputs = run(&lambda, &traffic());
        assert!(start.elapsed().as_secs() < 2, "took {:?}", start.elapsed());
        assert_eq!(
            stopped(&outputs),
            "lambda hooks[0].config.functions[0] stopped: operation budget exceeded (max_operations 100000 per event) at line 1, column 6 (error 1 of this hook; the 1st, 2nd, 4th... and every 10,000th are logged)"
        );
        // The next event gets a fresh budget, and so does every event.
        assert_eq!(run(&lambda, &traffic()).len(), 1);
        assert_eq!(lambda.errors(), 2);
    }

    #[test]
    fn the_operation_budget_is_shared_by_the_chain() {
        let spend = "let n = 0; while n < 80 { n += 1; } data";
        let config = json!({"functions": [spend, spend, spend], "max_operations": 1000});
        let lambda = parse(config).unwrap();
        let outputs = run(&lambda, &traffic());
        assert!(
            stopped(&outputs).starts_with(
                "lambda hooks[0].config.functions[2] stopped: operation budget exceeded (max_operations 1000 per event)"
            ),
            "{outputs:?}"
        );
        let two = parse(json!({"functions": [spend, spend], "max_operations": 1000})).unwrap();
        assert!(run(&two, &traffic()).is_empty());
    }

    #[test]
    fn deep_recursion_is_stopped() {
        let lambda = lambda(&["fn down(n) { down(n + 1) } down(0)"]);
        let line = stopped(&run(&lambda, &traffic()));
        assert!(
            line.contains("stopped: calls nested too deeply (at most 32 levels)"),
            "{line}"
        );
    }

    #[test]
    fn huge_values_are_stopped() {
        for (script, why) in [
            (
                r#"let s = "x"; loop { s += s; }"#,
                "a string over 262144 bytes",
            ),
            (
                r#"let s = "x"; s.pad(2000000, "y"); s"#,
                "a string over 262144 bytes",
            ),
            (
                "let a = []; loop { a.push(1); }",
                "an array over 256 elements",
            ),
            (
                "let a = [1]; loop { a += a; }",
                "an array over 256 elements",
            ),
            (
                "let a = []; a.pad(1000000, 0); a",
                "an array over 256 elements",
            ),
            (
                "let m = #{}; let i = 0; while i < 1000 { m.set(`k${i}`, i); i += 1; } m",
                "a map over 512 properties",
            ),
            (
                "let a = []; loop { a = [a]; }",
                "an array over 256 elements",
            ),
            (
                "let m = #{}; loop { m = #{m: m}; }",
                "a map over 512 properties",
            ),
            (
                r#"let s = "x"; let a = []; loop { a.push(s); s += s; }"#,
                "a string over 262144 bytes",
            ),
        ] {
            let lambda =
                parse(json!({"functions": [script], "max_operations": MAX_MAX_OPERATIONS}));
            let line = stopped(&run(&lambda.unwrap(), &traffic()));
            assert!(line.contains(why), "{script}: {line}");
        }
    }

    /// Rhai's limits bound each value, not their sum, nor map keys, nor a map grown with
    /// `m[key] = value` (unchecked by Rhai): the heap budget bounds them all.
    #[test]
    fn the_heap_budget_bounds_what_value_limits_do_not() {
        let big = r#"let s = "x"; s.pad(200000, "x");"#;
        let variables: String = (0..60)
            .map(|n| format!("let v{n} = s + \"{n}\";\n"))
            .collect();
        let keys: String = (0..60)
            .map(|n| format!("m[s + \"{n}\"] = {n};\n"))
            .collect();
        for script in [
            r#"let k = "k"; k.pad(1000, "k"); let m = #{}; let i = 0; loop { m[`${i}${k}`] = i; i += 1; }"#.to_string(),
            format!("{big}\n{variables}"),
            format!("{big} let m = #{{}};\n{keys}"),
        ] {
            let lambda =
                parse(json!({"functions": [script], "max_operations": MAX_MAX_OPERATIONS}));
            let start = Instant::now();
            let line = stopped(&run(&lambda.unwrap(), &traffic()));
            assert!(
                line.contains("stopped: memory budget exceeded (8 MiB per event)"),
                "{script}: {line}"
            );
            assert!(start.elapsed().as_secs() < 5, "{:?}", start.elapsed());
        }
    }

    #[test]
    fn at_most_16_calls_per_event() {
        let lambda = lambda(&[
            "for i in 0..10 { log(i) } data",
            r#"for i in 0..10 { http(#{url: "http://r/"}) } data"#,
        ]);
        let outputs = run(&lambda, &traffic());
        assert_eq!(outputs.len(), 17);
        assert_eq!(drafts(outputs.clone()).len(), 6);
        assert!(
            stopped(&outputs).contains(
                "functions[1] stopped: http: more than 16 http and log calls in one event at line 1, column 18"
            ),
            "{outputs:?}"
        );
        // The count starts again with the next event.
        assert_eq!(run(&lambda, &traffic()).len(), 17);
    }

    #[test]
    fn log_lines_are_cleaned_and_bounded() {
        let lambda =
            lambda(&[r#"log("a\nb\u0000c"); let s = "é"; s.pad(5000, "é"); log(s); log(#{x: 1})"#]);
        let lines = lines(&run(&lambda, &traffic()));
        assert_eq!(lines[0].1, "lambda hooks[0].config.functions[0]: a b c");
        assert!(lines[1].1.ends_with("é...[truncated]"));
        assert!(lines[1].1.len() < MAX_LOG_BYTES + 64);
        assert_eq!(
            lines[2].1,
            "lambda hooks[0].config.functions[0]: #{\"x\": 1}"
        );
    }

    #[test]
    fn http_drafts_a_call_signed_with_the_hooks_secret() {
        let lambda = parse(json!({"secret": "hunter2", "cluster": "hooks", "functions": [
            r#"let body = #{status: data.response.status, path: data.request.path, n: (), ok: true, list: [1, "a"]};
               http(#{url: "http://receiver:9000/a?x=1", method: "PUT", body: body,
                      headers: #{"X-Team": data.request.headers["x-team"], "x-n": 7}});
               http(#{url: "https://Other.example/b", cluster: "other", body: "plain", headers: #{"Content-Type": "text/csv"}});
               http(#{url: "http://third/"});"#
        ]}))
        .unwrap();
        let mut made = drafts(run(&lambda, &traffic()));
        assert_eq!(made.len(), 3);
        let first = made.remove(0);
        assert_eq!(first.method, "PUT");
        assert_eq!(first.path, "/a?x=1");
        assert_eq!(first.authority, "receiver:9000");
        assert_eq!(first.destination.cluster, "hooks");
        assert_eq!(first.destination.host_port, "receiver:9000");
        assert_eq!(
            first.headers,
            vec![
                ("x-team".to_string(), "payments".to_string()),
                ("x-n".to_string(), "7".to_string()),
                ("content-type".to_string(), "application/json".to_string()),
            ]
        );
        let body: Value = serde_json::from_slice(&first.body).unwrap();
        assert_eq!(
            body,
            json!({"status": 503, "path": "/orders/7", "n": null, "ok": true, "list": [1, "a"]})
        );
        let request = first.attempt("id-1", 1_700_000_000, &lambda.signing);
        let mac =
            crate::signing::kong_signature(&crate::signing::Secret::new("hunter2"), &request.body);
        assert!(
            request
                .headers
                .contains(&("x-kong-signature".to_string(), mac))
        );

        let second = made.remove(0);
        assert_eq!(
            (
                second.method.as_str(),
                second.path.as_str(),
                &second.body[..]
            ),
            ("POST", "/b", &b"plain"[..])
        );
        assert_eq!(second.destination.cluster, "other");
        assert!(second.destination.tls);
        assert_eq!(second.destination.host_port, "Other.example:443");
        assert_eq!(
            second.headers,
            vec![("content-type".to_string(), "text/csv".to_string())]
        );

        let third = made.remove(0);
        assert_eq!(third.destination.cluster, "hooks");
        assert!(third.body.is_empty() && third.headers.is_empty());

        // Without a configured cluster, the URL's host is the cluster, as for webhooks.
        let plain = self::lambda(&[r#"http(#{url: "http://Receiver-A:9000/"})"#]);
        let draft = drafts(run(&plain, &traffic())).remove(0);
        assert_eq!(draft.destination.cluster, "Receiver-A");
    }

    #[test]
    fn a_bad_http_request_is_a_runtime_error() {
        for (request, why) in [
            ("#{}", "http: url is required"),
            ("#{url: 7}", "http: url must be a string, not i64"),
            (
                r#"#{url: "ftp://x/"}"#,
                "http: url must start with http:// or https://",
            ),
            (
                r#"#{url: "http://u:p@x/"}"#,
                "http: url must not contain credentials",
            ),
            (
                r#"#{url: "http://x/", method: "GE T"}"#,
                "http: method must be an HTTP method",
            ),
            (
                r#"#{url: "http://x/", cluster: ""}"#,
                "http: cluster must not be empty",
            ),
            (
                r#"#{url: "http://x/", urll: 1}"#,
                "http: unknown key 'urll'; expected one of: url, method, headers, body, cluster",
            ),
            (
                r#"#{url: "http://x/", headers: #{"x-a": "1\r\nx-b: 2"}}"#,
                "http: headers: 'x-a' must not contain control characters",
            ),
            (
                r#"#{url: "http://x/", headers: #{"bad name": "1"}}"#,
                "http: headers: 'bad name' is not a valid header name",
            ),
            (
                r#"#{url: "http://x/", headers: #{"Webhook-Id": "1"}}"#,
                "http: headers: 'webhook-id' is set by the handler",
            ),
            (
                r#"#{url: "http://x/", headers: #{"x-kong-signature": "1"}}"#,
                "http: headers: 'x-kong-signature' is set by the handler",
            ),
            (
                r#"#{url: "http://x/", headers: #{"x-a": [1]}}"#,
                "http: headers: 'x-a' must be a string, not array",
            ),
            (
                r#"#{url: "http://x/", headers: "x"}"#,
                "http: headers must be a map, not string",
            ),
            (
                r#"#{url: "http://x/", body: Fn("f")}"#,
                "http: body: a value of type Fn has no JSON form",
            ),
        ] {
            let lambda = lambda(&[&format!("http({request})")]);
            let outputs = run(&lambda, &traffic());
            assert_eq!(outputs.len(), 1, "{request}");
            let line = stopped(&outputs);
            assert!(line.contains(why), "{request}: {line}");
        }
        let line = stopped(&run(&lambda(&[r#"http("http://x/")"#]), &traffic()));
        assert!(line.contains("function not found: http ("), "{line}");
    }

    /// Scripts that try to break the sandbox: each ends in a value or an error, never a panic
    /// (a panic would fail this test), and within the budget.
    #[test]
    fn nothing_a_script_does_panics() {
        let hostile = [
            "9223372036854775807 + 1",
            "-9223372036854775807 - 2",
            "9223372036854775807 * 2",
            "1 / 0",
            "1 % 0",
            "(-9223372036854775807 - 1) / -1",
            "(-9223372036854775807 - 1) % -1",
            "abs(-9223372036854775807 - 1)",
            "2 ** 64",
            "2 ** -1",
            "1 << 64",
            "1 >> -1",
            "1 << -1",
            r#""abc".sub_string(-5, 100)"#,
            r#""abc".sub_string(2, -100)"#,
            r#""abc"[-9223372036854775807]"#,
            r#""abc"[99]"#,
            r#""é".chars()"#,
            r#""abc".split(-1)"#,
            r#""abc".crop(-9223372036854775807, 9223372036854775807)"#,
            r#""a".pad(9223372036854775807, "b")"#,
            r#""a".pad(-1, "b")"#,
            r#""abc".truncate(-1)"#,
            r#""abc".index_of("b", -9223372036854775807)"#,
            r#""abc".get(-9223372036854775807)"#,
            r#"let s = "abc"; s[-1] = 'x'; s"#,
            r#"let s = "abc"; s[9] = 'x'; s"#,
            "[1, 2][99]",
            "[1, 2][-9223372036854775807]",
            "[1, 2].extract(-9223372036854775807, 9223372036854775807)",
            "[1, 2].splice(9223372036854775807, 9223372036854775807, [3])",
            "[1, 2].drain(-9223372036854775807, 9223372036854775807)",
            "[1, 2].pad(9223372036854775807, 0)",
            "[1, 2].truncate(-1)",
            "[1, 2].chop(-1)",
            "[1, 2].remove(-9223372036854775807)",
            "[1, 2].insert(9223372036854775807, 0)",
            "[3, 1, 2].sort()",
            "[3, (), \"a\", #{}].sort()",
            "[1, 2].split(-9223372036854775807)",
            "let a = [1]; a.push(a); a.push(a); a",
            "range(0, 9223372036854775807).len()",
            "for x in range(0, 9223372036854775807, 9223372036854775807) { }",
            "for x in range(9223372036854775807, 0, -1) { }",
            "for x in 0..9223372036854775807 { }",
            r#"parse_int("zzz")"#,
            r#"parse_int("99999999999999999999")"#,
            r#"parse_int("10", 99)"#,
            r#"to_int("x")"#,
            "to_char(-1)",
            "to_char(1114112)",
            r#"to_hex(-1) + to_binary(-9223372036854775807 - 1) + to_octal(-1)"#,
            r#"Fn("")"#,
            r#"Fn("nope").call()"#,
            r#"call(Fn("log"), 1)"#,
            "type_of(data) + data.to_string()",
            "data.keys().len() + data.values().len()",
            "data.remove(\"request\"); data.request.x",
            "let m = #{}; m.a.b.c = 1",
            "#{a: 1} + #{b: 2}",
            "let a = []; a[0] = 1",
            "let x; x.y",
            "data[()]",
            "data[1]",
            "this",
            "fn f() { this.x = 1 } f()",
            "return",
            "exit(1)",
            "exit()",
            "break",
            "throw",
            "throw #{}",
            "try { throw 1 } catch (e) { e }",
            "try { loop {} } catch (e) { e }",
            "switch 9223372036854775807 { 0..9223372036854775807 => 1, _ => 2 }",
            "let x = 1; is_def_var(\"x\") && is_def_fn(\"f\", 1)",
            "'\\u{10FFFF}' + \"\\u{10FFFF}\"",
            "`${`${`${1}`}`}`",
            "\"x\".to_blob()",
            "blob(10)",
            "timestamp()",
            "print(1)",
            "debug(1)",
            "sleep(1)",
            "import \"x\" as y;",
            "\"a\" in \"abc\"",
            "1 in [1]",
            "1 in #{}",
            "\"x\" in data",
            "data.request.headers.values().map(|v| v.len()).reduce(|a, b| a + b)",
            "[1, 2].map(|x| x.nope())",
            "[1, 2].filter(\"nope\")",
            "[1, 2].reduce(|a, b| a + b, 0)",
            "[1, 2].sort(|a, b| a)",
            "[1, 2].sort(|a, b| 1 / 0)",
            "let f = |x| x; f.call(f)",
            "fn f(x) { x.call(x) } f(Fn(\"f\"))",
            "fn f() { f() } f()",
            "fn f(a) { [a, a] } let x = 1; loop { x = f(x) }",
            "let x = #{}; x.to_json()",
            "#{a: [1, #{b: ()}]}.to_json()",
            "parse_json(\"{\")",
            "parse_json(\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\")",
            "event = 1",
            "source.x = 1",
            "let data = 1; data",
            "const x = 1; x = 2",
            "let s = \"\"; for i in 0..100000 { s += \"aaaaaaaaaa\" }",
            "let a = []; for i in 0..3000 { a = [a, a] }",
            "let a = [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]; a == a",
            "let a = []; loop { a = [a]; } ",
            r#"http(#{url: "http://x/", body: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]})"#,
        ];
        for script in hostile {
            let lambda = match parse(json!({"functions": [script]})) {
                Ok(lambda) => lambda,
                // A script refused at load is fine too: it never runs.
                Err(_) => continue,
            };
            let start = Instant::now();
            let _ = run(&lambda, &traffic());
            assert!(
                start.elapsed().as_secs() < 5,
                "{script}: {:?}",
                start.elapsed()
            );
        }
    }

    /// The worst a script can do to the stack: the deepest calls, each in the deepest
    /// expression; and values nested as deeply as the size limits allow (about 750 levels),
    /// copied, compared, written, converted, thrown and dropped. Natively (`--release`) this
    /// takes under 192 KiB; a wasm32 module has 1 MiB (the end-to-end test runs it in Envoy).
    #[test]
    fn the_worst_case_fits_in_a_small_stack() {
        // The recursive call inside the most parentheses a function body allows.
        let nested_call = (0..MAX_FUNCTION_EXPR_DEPTH)
            .rev()
            .map(|depth| {
                format!(
                    "fn f(n) {{ {}if n > 0 {{ f(n - 1) }} else {{ 0 }}{} }} f(1000)",
                    "(".repeat(depth),
                    ")".repeat(depth)
                )
            })
            .find(|script| parse(json!({"functions": [script]})).is_ok())
            .unwrap();
        let mut scripts = vec![
            nested_call,
            "let a = []; loop { a = [a]; }".to_string(),
            "let m = #{}; loop { m = #{m: m}; }".to_string(),
        ];
        for then in [
            "let y = x; y.len()",
            "x == x",
            "x != [m, a]",
            "log(x)",
            "`${x}`",
            "x.to_string() + x.to_debug()",
            "x.contains(a) || m in x || x.index_of(m) > 0",
            "m.to_json()",
            r#"http(#{url: "http://x/", body: x})"#,
            "throw x",
            "switch x { _ => 1 }",
            "x.dedup(); x.sort()",
            "x[0].m.m = 1",
            "x = ()",
        ] {
            scripts.push(format!("{DEEP_VALUES} let x = [m, a]; {then}"));
        }
        let stack = if cfg!(debug_assertions) { 8192 } else { 256 } * 1024;
        let handle = std::thread::Builder::new()
            .stack_size(stack)
            .spawn(move || {
                for script in &scripts {
                    let lambda =
                        parse(json!({"functions": [script], "max_operations": MAX_MAX_OPERATIONS}));
                    let outputs = run(&lambda.unwrap(), &traffic());
                    // The deep values were built whole: no limit stopped them early.
                    let early = |line: &String| line.contains(" over ") || line.contains("budget");
                    assert!(
                        !script.contains("while")
                            || !outputs.iter().any(
                                |output| matches!(output, Output::Log(_, line) if early(line))
                            ),
                        "{script}: {outputs:?}"
                    );
                }
            })
            .unwrap();
        handle.join().unwrap();
    }

    /// Long chains of operators, properties, indexes and calls nest the syntax tree as deeply
    /// as they are long: the expression depth limit refuses them when the configuration loads,
    /// before anything recursive (parsing on, evaluating, dropping) can take the stack.
    #[test]
    fn long_chains_are_refused_at_load_within_a_small_stack() {
        let n = 5_000;
        let chains = [
            format!("1{}", "+1".repeat(n)),
            format!("true{}", "&&true".repeat(n)),
            format!("data{}", ".a".repeat(n)),
            format!("data{}", "[0]".repeat(n)),
            format!("{}true", "!".repeat(n)),
            format!("data{}", ".len()".repeat(n)),
            format!("1{}", " ?? 1".repeat(n)),
            format!("{}1{}", "[".repeat(n), "]".repeat(n)),
            format!("{}1{}", "#{a:".repeat(n), "}".repeat(n)),
            format!("{}{}", "{".repeat(n), "}".repeat(n)),
            format!("{}1{}", "if true { ".repeat(n), " }".repeat(n)),
        ];
        let stack = if cfg!(debug_assertions) { 8192 } else { 256 } * 1024;
        std::thread::Builder::new()
            .stack_size(stack)
            .spawn(move || {
                for chain in &chains {
                    let errors = parse(json!({"functions": [format!("let x = {chain}; data")]}))
                        .unwrap_err();
                    assert_eq!(errors.len(), 1, "{errors:?}");
                    assert!(errors[0].contains("syntax error"), "{errors:?}");
                }
            })
            .unwrap()
            .join()
            .unwrap();
    }

    /// An array and a map nested as deeply as the size limits allow.
    const DEEP_VALUES: &str = "let a = []; let i = 0; while i < 250 { a = [a]; i += 1; }
        let m = #{}; i = 0; while i < 500 { m = #{m: m}; i += 1; }";

    #[test]
    fn a_handler_compares_by_its_sources_and_settings() {
        let a = lambda(&["data"]);
        assert_eq!(a, lambda(&["data"]));
        assert_eq!(a, a.clone());
        assert_ne!(a, lambda(&["data;"]));
        assert_ne!(
            a,
            parse(json!({"functions": ["data"], "max_operations": 5000})).unwrap()
        );
        let debug = format!(
            "{:?}",
            parse(json!({"functions": ["\"hunter2\""], "secret": "s3"})).unwrap()
        );
        assert!(
            !debug.contains("hunter2") && !debug.contains("s3\""),
            "{debug}"
        );
    }

    #[test]
    fn routing_runs_the_chain_and_queues_its_calls() {
        let config = json!({"hooks": [{"name": "l", "source": "traffic", "handler": "lambda",
            "config": {"secret": "k", "functions": [r#"http(#{url: "http://r/x", body: data.response})"#]}}]});
        let config = config::parse(config.to_string().as_bytes()).unwrap();
        let hook = config.hooks.get(0).unwrap();
        assert!(matches!(hook.handler, Handler::Lambda(_)));
        assert!(hook.handler.signing().is_set());
        assert_eq!(hook.handler.note("l"), None);
        let actions = config.hooks.route(
            &traffic(),
            0,
            &crate::shared::Memory::default(),
            &mut crate::id::IdGen::new(1),
        );
        let delivered = actions
            .iter()
            .filter(|action| matches!(action, crate::hooks::Action::Deliver(_)))
            .count();
        assert_eq!(delivered, 1);
    }
}
