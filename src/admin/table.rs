//! A result set the console sends: columns (text or int8) and rows of text values.

use bytes::BytesMut;

use crate::protocol::build::{self, ColumnType};

/// One result set.
pub struct Table {
    columns: Vec<(&'static str, ColumnType)>,
    rows: Vec<Vec<Option<String>>>,
}

/// A cell value: text, number or NULL.
pub enum V {
    S(String),
    N(i128),
    Null,
}

impl From<&str> for V {
    fn from(s: &str) -> V {
        V::S(s.to_string())
    }
}
impl From<String> for V {
    fn from(s: String) -> V {
        V::S(s)
    }
}
impl From<Option<String>> for V {
    fn from(s: Option<String>) -> V {
        s.map_or(V::Null, V::S)
    }
}
macro_rules! num {
    ($($t:ty),*) => {$(
        impl From<$t> for V {
            fn from(n: $t) -> V { V::N(n as i128) }
        }
        impl From<Option<$t>> for V {
            fn from(n: Option<$t>) -> V { n.map_or(V::Null, |n| V::N(n as i128)) }
        }
    )*};
}
num!(u8, u16, u32, u64, usize, i32, i64);
impl From<bool> for V {
    fn from(b: bool) -> V {
        V::N(b as i128)
    }
}

impl Table {
    /// Columns: `name` is text, `#name` is int8.
    pub fn new(columns: &[&'static str]) -> Table {
        Table {
            columns: columns
                .iter()
                .map(|c| match c.strip_prefix('#') {
                    Some(n) => (n, ColumnType::Int8),
                    None => (*c, ColumnType::Text),
                })
                .collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, values: Vec<V>) {
        debug_assert_eq!(values.len(), self.columns.len());
        self.rows.push(
            values
                .into_iter()
                .map(|v| match v {
                    V::S(s) => Some(s),
                    V::N(n) => Some(n.to_string()),
                    V::Null => None,
                })
                .collect(),
        );
    }

    /// RowDescription, DataRows and CommandComplete `tag`.
    pub fn write(&self, buf: &mut BytesMut, tag: &str) {
        build::row_description_typed(buf, &self.columns);
        for r in &self.rows {
            let vals: Vec<Option<&str>> = r.iter().map(|v| v.as_deref()).collect();
            build::data_row(buf, &vals);
        }
        build::command_complete(buf, tag);
    }
}
