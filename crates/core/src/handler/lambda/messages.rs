//! What the `lambda` handler says about a function that does not compile or stops: syntax
//! and runtime errors as messages with their position, never the values involved.

use super::*;

/// ` at line L, column C`, or nothing when the position is unknown.
pub(super) fn at(position: Position) -> String {
    match (position.line(), position.position()) {
        (Some(line), Some(column)) => format!(" at line {line}, column {column}"),
        (Some(line), None) => format!(" at line {line}"),
        _ => String::new(),
    }
}

/// A syntax error, described without quoting the script (which may hold secrets).
pub(super) fn syntax(error: &ParseErrorType) -> String {
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
pub(super) fn runtime(error: &EvalAltResult, settings: &Settings) -> String {
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
