//! Tenant queries reach MongoDB only through an allowlist. Every part of a read that MongoDB
//! evaluates (the filter, the projection) is screened at any depth: an operator that is not
//! on the list is refused, so nothing that runs code on the server (`$where`, `$function`,
//! `$accumulator`, aggregation expressions through `$expr` or a computed projection) can
//! ever get through, including operators MongoDB adds later.

use mongodb::bson::{Bson, Document};
use std::fmt;

/// Query operators a filter may use: comparisons, logic, element, array and the safe
/// evaluation operators. None of them evaluates an aggregation expression or JavaScript.
const FILTER_OPERATORS: &[&str] = &[
    "$eq",
    "$ne",
    "$gt",
    "$gte",
    "$lt",
    "$lte",
    "$in",
    "$nin",
    "$and",
    "$or",
    "$nor",
    "$not",
    "$exists",
    "$type",
    "$all",
    "$elemMatch",
    "$size",
    "$regex",
    "$options",
    "$mod",
];

/// Operators a projection value may use (with their own checked arguments).
const PROJECTION_OPERATORS: &[&str] = &["$slice", "$elemMatch"];

/// Nesting a filter or projection may have. MongoDB allows 100; a tenant query needs far
/// less, and a shallow bound keeps screening and planning cheap.
pub const MAX_DEPTH: usize = 32;

/// Why a query part was refused. Safe to show the tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// `filter` or `projection`.
    pub part: &'static str,
    /// Where in it, as a dotted path of keys and indexes.
    pub path: String,
    /// Why.
    pub reason: String,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.part, self.reason)
        } else {
            write!(f, "{} at {}: {}", self.part, self.path, self.reason)
        }
    }
}

impl std::error::Error for Refused {}

/// Checks a filter: every `$` key at any depth is an allowed query operator, no JavaScript
/// value appears anywhere, and the nesting stays within [`MAX_DEPTH`].
pub fn screen_filter(filter: &Document) -> Result<(), Refused> {
    let mut screen = Screen::new("filter");
    screen.filter_document(filter, 0)
}

/// Checks a projection: fields map to inclusion flags (numbers or booleans), nested
/// projections, or `$slice`/`$elemMatch` with checked arguments. Strings and every other
/// operator are refused: MongoDB evaluates them as aggregation expressions.
pub fn screen_projection(projection: &Document) -> Result<(), Refused> {
    let mut screen = Screen::new("projection");
    screen.projection_document(projection, 0)
}

struct Screen {
    part: &'static str,
    path: Vec<String>,
}

impl Screen {
    fn new(part: &'static str) -> Self {
        Self {
            part,
            path: Vec::new(),
        }
    }

    fn refuse(&self, reason: impl Into<String>) -> Refused {
        Refused {
            part: self.part,
            path: self.path.join("."),
            reason: reason.into(),
        }
    }

    fn deeper(&self, depth: usize) -> Result<usize, Refused> {
        if depth >= MAX_DEPTH {
            Err(self.refuse(format!("nested deeper than {MAX_DEPTH} levels")))
        } else {
            Ok(depth + 1)
        }
    }

    fn filter_document(&mut self, document: &Document, depth: usize) -> Result<(), Refused> {
        let depth = self.deeper(depth)?;
        for (key, value) in document {
            self.path.push(key.clone());
            if key.starts_with('$') && !FILTER_OPERATORS.contains(&key.as_str()) {
                return Err(self.refuse(format!(
                    "{key} is not an allowed query operator (allowed: {})",
                    FILTER_OPERATORS.join(", ")
                )));
            }
            self.filter_value(value, depth)?;
            self.path.pop();
        }
        Ok(())
    }

    fn filter_value(&mut self, value: &Bson, depth: usize) -> Result<(), Refused> {
        match value {
            Bson::Document(document) => self.filter_document(document, depth),
            Bson::Array(items) => {
                let depth = self.deeper(depth)?;
                for (i, item) in items.iter().enumerate() {
                    self.path.push(i.to_string());
                    self.filter_value(item, depth)?;
                    self.path.pop();
                }
                Ok(())
            }
            Bson::JavaScriptCode(_) | Bson::JavaScriptCodeWithScope(_) => {
                Err(self.refuse("JavaScript values are not allowed"))
            }
            _ => Ok(()),
        }
    }

    fn projection_document(&mut self, document: &Document, depth: usize) -> Result<(), Refused> {
        let depth = self.deeper(depth)?;
        for (key, value) in document {
            self.path.push(key.clone());
            if key.starts_with('$') {
                return Err(self.refuse(format!("{key} is not a field name")));
            }
            match value {
                Bson::Boolean(_) | Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) => {}
                Bson::Document(inner) => match inner.iter().next() {
                    Some((operator, _)) if operator.starts_with('$') => {
                        self.projection_operator(inner, depth)?;
                    }
                    _ => self.projection_document(inner, depth)?,
                },
                other => {
                    return Err(self.refuse(format!(
                        "a projection value is 0/1, true/false, a nested projection, $slice or \
                         $elemMatch, not {:?} (MongoDB would evaluate it as an expression)",
                        other.element_type()
                    )));
                }
            }
            self.path.pop();
        }
        Ok(())
    }

    fn projection_operator(&mut self, operators: &Document, depth: usize) -> Result<(), Refused> {
        if operators.len() != 1 {
            return Err(self.refuse("a projection operator stands alone in its document"));
        }
        for (operator, argument) in operators {
            self.path.push(operator.clone());
            match (operator.as_str(), argument) {
                ("$slice", Bson::Int32(_) | Bson::Int64(_)) => {}
                ("$slice", Bson::Array(bounds))
                    if bounds.len() == 2
                        && bounds
                            .iter()
                            .all(|b| matches!(b, Bson::Int32(_) | Bson::Int64(_))) => {}
                ("$slice", _) => {
                    return Err(self.refuse("$slice takes a number or [skip, limit]"));
                }
                ("$elemMatch", Bson::Document(filter)) => self.filter_document(filter, depth)?,
                ("$elemMatch", _) => {
                    return Err(self.refuse("$elemMatch takes a filter document"));
                }
                (other, _) => {
                    return Err(self.refuse(format!(
                        "{other} is not an allowed projection operator (allowed: {})",
                        PROJECTION_OPERATORS.join(", ")
                    )));
                }
            }
            self.path.pop();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::doc;

    #[test]
    fn ordinary_filters_pass() {
        for filter in [
            doc! {},
            doc! { "product": "widget" },
            doc! { "total": { "$gte": 10, "$lt": 20 } },
            doc! { "$or": [{ "a": 1 }, { "b": { "$in": [1, 2] } }] },
            doc! { "tags": { "$elemMatch": { "$regex": "^x", "$options": "i" } } },
            doc! { "n": { "$not": { "$mod": [2, 0] } }, "x": { "$exists": false } },
            doc! { "address": { "city": "Oslo" } },
        ] {
            screen_filter(&filter).unwrap();
        }
    }

    #[test]
    fn code_running_and_unknown_operators_are_refused_at_any_depth() {
        for (filter, operator) in [
            (doc! { "$where": "sleep(100)" }, "$where"),
            (doc! { "$or": [{ "a": 1 }, { "$where": "true" }] }, "$where"),
            (
                doc! { "$expr": { "$function": { "body": "x", "args": [], "lang": "js" } } },
                "$expr",
            ),
            (
                doc! { "a": { "$elemMatch": { "$expr": { "$gt": [1, 0] } } } },
                "$expr",
            ),
            (doc! { "a": { "$text": { "$search": "x" } } }, "$text"),
            (doc! { "$jsonSchema": {} }, "$jsonSchema"),
            (doc! { "a": { "$near": [0, 0] } }, "$near"),
        ] {
            let refused = screen_filter(&filter).unwrap_err();
            assert!(refused.reason.contains(operator), "{refused}");
            assert_eq!(refused.part, "filter");
        }
    }

    #[test]
    fn javascript_values_are_refused() {
        let filter = doc! { "a": Bson::JavaScriptCode("while(true){}".into()) };
        assert!(screen_filter(&filter).is_err());
    }

    #[test]
    fn nesting_is_bounded() {
        let mut filter = doc! { "a": 1 };
        for _ in 0..MAX_DEPTH {
            filter = doc! { "$and": [filter] };
        }
        let refused = screen_filter(&filter).unwrap_err();
        assert!(refused.reason.contains("nested deeper"), "{refused}");
    }

    #[test]
    fn ordinary_projections_pass() {
        for projection in [
            doc! { "product": 1, "total": true },
            doc! { "_id": 0, "secret": false },
            doc! { "address": { "city": 1 } },
            doc! { "items": { "$slice": 3 } },
            doc! { "items": { "$slice": [1, 2] } },
            doc! { "items": { "$elemMatch": { "qty": { "$gt": 2 } } } },
        ] {
            screen_projection(&projection).unwrap();
        }
    }

    #[test]
    fn computed_projections_are_refused_at_any_depth() {
        let function =
            doc! { "$function": { "body": "function(){while(true){}}", "args": [], "lang": "js" } };
        for projection in [
            doc! { "x": function.clone() },
            doc! { "x": { "$let": { "vars": { "v": function.clone() }, "in": "$$v" } } },
            doc! { "x": { "$map": { "input": [1], "in": function.clone() } } },
            doc! { "a": { "b": function } },
            doc! { "x": "$secret" },
            doc! { "x": { "$literal": 1 } },
            doc! { "x": { "$meta": "textScore" } },
            doc! { "$where": 1 },
            doc! { "items": { "$slice": "$n" } },
            doc! { "items": { "$elemMatch": { "$where": "true" } } },
        ] {
            let refused = screen_projection(&projection).unwrap_err();
            assert_eq!(refused.part, "projection", "{refused}");
        }
    }
}
