//! What goes into a statement (parameters) and comes out of a row (column
//! values), the same for both databases: the five SQLite storage classes.
//! A parameter borrows its text or bytes, so binding one copies nothing.

use super::DbError;

/// One value, borrowed: a parameter bound to a statement, or a column read
/// from a row. Flags are integers 0/1 on both databases (the SQL stays the
/// same text); PostgreSQL's booleans and smaller integers read as `Int`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

impl Value<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Int(_) => "an integer",
            Value::Real(_) => "a real",
            Value::Text(_) => "text",
            Value::Blob(_) => "a blob",
        }
    }
}

/// A Rust value that can be bound as a parameter.
pub trait ToValue {
    fn to_value(&self) -> Value<'_>;
}

macro_rules! int_to_value {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value<'_> {
                // u64/usize above i64::MAX never occur here (lines, counts,
                // milliseconds); they would wrap like an `as` cast.
                Value::Int(*self as i64)
            }
        }
    )*};
}
int_to_value!(i64, i32, i16, u32, u64, usize, u8);

impl ToValue for bool {
    fn to_value(&self) -> Value<'_> {
        Value::Int(i64::from(*self))
    }
}
impl ToValue for f64 {
    fn to_value(&self) -> Value<'_> {
        Value::Real(*self)
    }
}
impl ToValue for str {
    fn to_value(&self) -> Value<'_> {
        Value::Text(self)
    }
}
impl ToValue for String {
    fn to_value(&self) -> Value<'_> {
        Value::Text(self)
    }
}
impl ToValue for [u8] {
    fn to_value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}
impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}
impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value<'_> {
        (**self).to_value()
    }
}
impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value<'_> {
        match self {
            Some(v) => v.to_value(),
            None => Value::Null,
        }
    }
}
impl ToValue for Value<'_> {
    fn to_value(&self) -> Value<'_> {
        *self
    }
}

/// A statement's parameters: `params![a, b]`, an array `[x, y]` of one
/// type, or `()` for none.
pub trait Params {
    fn values(&self) -> Vec<Value<'_>>;
}

impl Params for () {
    fn values(&self) -> Vec<Value<'_>> {
        Vec::new()
    }
}
impl Params for &[&dyn ToValue] {
    fn values(&self) -> Vec<Value<'_>> {
        self.iter().map(|v| v.to_value()).collect()
    }
}
impl<T: ToValue, const N: usize> Params for [T; N] {
    fn values(&self) -> Vec<Value<'_>> {
        self.iter().map(|v| v.to_value()).collect()
    }
}
impl<T: ToValue> Params for Vec<T> {
    fn values(&self) -> Vec<Value<'_>> {
        self.iter().map(|v| v.to_value()).collect()
    }
}

/// Parameters of mixed types, like rusqlite's `params!`.
macro_rules! db_params {
    () => { () };
    ($($p:expr),+ $(,)?) => {
        &[$(&$p as &dyn $crate::store::db::ToValue),+] as &[&dyn $crate::store::db::ToValue]
    };
}
pub(crate) use db_params as params;

/// A Rust value a column can be read as.
pub trait FromValue: Sized {
    fn from_value(v: Value<'_>) -> Result<Self, String>;
}

fn wrong(v: Value<'_>, want: &str) -> String {
    format!("holds {}, expected {want}", v.kind())
}

impl FromValue for i64 {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        match v {
            Value::Int(i) => Ok(i),
            v => Err(wrong(v, "an integer")),
        }
    }
}

macro_rules! int_from_value {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            fn from_value(v: Value<'_>) -> Result<Self, String> {
                let i = i64::from_value(v)?;
                <$t>::try_from(i).map_err(|_| format!("{i} is out of range for {}", stringify!($t)))
            }
        }
    )*};
}
int_from_value!(i32, u32, u64, usize);

impl FromValue for bool {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        Ok(i64::from_value(v)? != 0)
    }
}
impl FromValue for f64 {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        match v {
            Value::Real(f) => Ok(f),
            Value::Int(i) => Ok(i as f64),
            v => Err(wrong(v, "a real")),
        }
    }
}
impl FromValue for String {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        match v {
            Value::Text(s) => Ok(s.to_string()),
            v => Err(wrong(v, "text")),
        }
    }
}
impl FromValue for Vec<u8> {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        match v {
            Value::Blob(b) => Ok(b.to_vec()),
            Value::Text(s) => Ok(s.as_bytes().to_vec()),
            v => Err(wrong(v, "a blob")),
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// A column value's conversion error, with its column.
pub(super) fn conversion(col: usize, msg: String) -> DbError {
    DbError::Conversion { col, msg }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_convert_both_ways_and_refuse_what_does_not_fit() {
        let p = params![1i64, "a", None::<i64>, true, 2.5f64, vec![1u8, 2]];
        assert_eq!(
            p.values(),
            vec![
                Value::Int(1),
                Value::Text("a"),
                Value::Null,
                Value::Int(1),
                Value::Real(2.5),
                Value::Blob(&[1, 2])
            ]
        );
        assert_eq!(u64::from_value(Value::Int(7)), Ok(7));
        assert!(u64::from_value(Value::Int(-1)).is_err());
        assert!(String::from_value(Value::Int(1)).is_err());
        assert_eq!(Option::<String>::from_value(Value::Null), Ok(None));
        assert!(i64::from_value(Value::Null).is_err());
        assert_eq!(bool::from_value(Value::Int(2)), Ok(true));
    }
}
