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
mod messages;
mod request;
mod values;

use messages::*;
use request::*;
use values::*;

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
use crate::delivery::Call;
use crate::event::{Bodies, Event, Redaction};
use crate::log::Level;
use crate::reader::{Object, Problems, element, kind};
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
    pub fn outputs(&self, bodies: &mut Bodies<'_>, redaction: &Redaction) -> Vec<Output> {
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
            scope.push_constant("source", event.source_name.to_string());
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
    pub fn error_count(&self) -> u64 {
        self.sandbox.errors.get()
    }
}

impl super::Handler for Lambda {
    fn prepare(&self, bodies: &mut Bodies<'_>, redaction: &Redaction) -> Vec<Output> {
        self.outputs(bodies, redaction)
    }

    fn signing(&self) -> &Signing {
        &self.signing
    }

    fn retry(&self) -> Option<&crate::delivery::retry::Overrides> {
        self.retry.as_ref()
    }

    fn errors(&self) -> Option<u64> {
        Some(self.error_count())
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
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

#[cfg(test)]
mod tests;
