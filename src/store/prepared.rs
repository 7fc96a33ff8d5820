//! Statements of fixed text that each PostgreSQL connection prepares once and keeps.
//!
//! diesel-async prepares every statement it cannot cache afresh: a round trip to parse it, one
//! to run it, and a plan each time. It caches none of `sql_query`, UPDATE or a multi-row
//! insert, which are most of the message writer's statements. [`Kept`] marks a statement
//! whose text never changes with its binds (lists travel as one array bind) as safe to keep,
//! under a marker type of its own: diesel keys its statement cache by type.

use std::marker::PhantomData;

use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};

/// `query`, kept prepared under the name `Name` (an empty enum declared beside the query).
pub struct Kept<Name, Q> {
    query: Q,
    name: PhantomData<Name>,
}

/// Keeps `query` prepared as `Name`. Only for a query whose SQL text is the same whatever
/// its binds: two texts under one name would run the first one's statement.
pub fn kept<Name: 'static, Q>(query: Q) -> Kept<Name, Q> {
    Kept { query, name: PhantomData }
}

impl<Name: 'static, Q: QueryFragment<Pg>> QueryFragment<Pg> for Kept<Name, Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.query.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _: &Pg) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<Name: 'static, Q> QueryId for Kept<Name, Q> {
    type QueryId = Name;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<Name, Q: Query> Query for Kept<Name, Q> {
    type SqlType = Q::SqlType;
}
