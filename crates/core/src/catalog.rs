//! What a configuration may name: the kinds of handler this build has. Parsing, the JSON
//! Schema and the messages read a [`Catalog`]; [`Catalog::builtin`] is the product's, and a
//! catalog with one more kind is one line (`Catalog::builtin().with_handler(&MY_KIND)`), as
//! `crates/core/tests/plugins.rs` shows.

use crate::handler::{self, HandlerKind};

/// The kinds a configuration may name.
#[derive(Clone)]
pub struct Catalog {
    handlers: Vec<&'static dyn HandlerKind>,
}

impl Catalog {
    /// Every kind this build has ([`handler::builtin`]).
    pub fn builtin() -> Catalog {
        Catalog {
            handlers: handler::builtin(),
        }
    }

    /// This catalog and handler kind `kind` (which replaces a kind of the same name).
    pub fn with_handler(mut self, kind: &'static dyn HandlerKind) -> Catalog {
        self.handlers.retain(|known| known.name() != kind.name());
        self.handlers.push(kind);
        self
    }

    pub fn handlers(&self) -> &[&'static dyn HandlerKind] {
        &self.handlers
    }

    /// The handler kind called `name`.
    pub fn handler(&self, name: &str) -> Option<&'static dyn HandlerKind> {
        self.handlers
            .iter()
            .find(|kind| kind.name() == name)
            .copied()
    }

    /// The handler names, in the catalog's order, for messages and the schema.
    pub fn handler_names(&self) -> Vec<&'static str> {
        handler::names(&self.handlers)
    }
}
