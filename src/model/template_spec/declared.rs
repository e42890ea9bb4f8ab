//! `[templates.<id>]` sections of the config file: templates declared by
//! hand where the provider offers no template info (eTelecom).
//!
//! ```toml
//! [templates.217489]
//! params = [
//!   { name = "customer_name", required = true, max_length = 30 },
//!   { name = "due_date", required = false, min_length = 8, max_length = 10 },
//! ]
//! ```
//! `required` defaults to true (a missing column then refuses the campaign
//! before any token is bought, the cheap mistake); `accept_null` defaults to
//! `not required`. Parsed by hand rather than by serde so an error names the
//! exact key at fault: `templates.217489.params[1].max_length: expected a
//! number`.

use std::collections::HashMap;

use super::{ParamSpec, TemplateSource, TemplateSpec};

const TEMPLATE_KEYS: &str = "params";
const PARAM_KEYS: &str = "name, required, min_length, max_length, accept_null";

/// Parse the value of the top-level `templates` key.
pub fn parse_templates(value: &toml::Value) -> Result<HashMap<String, TemplateSpec>, String> {
    let toml::Value::Table(table) = value else {
        return Err("templates: expected tables, one per template id: [templates.<id>]".into());
    };
    let mut out = HashMap::new();
    for (id, section) in table {
        let at = format!("templates.{id}");
        if id.trim().is_empty() {
            return Err(format!("{at}: the template id is empty"));
        }
        let toml::Value::Table(section) = section else {
            return Err(format!("{at}: expected a table: [templates.{id}]"));
        };
        if let Some(key) = section.keys().find(|k| *k != "params") {
            return Err(format!(
                "{at}.{key}: unknown key (a template section holds: {TEMPLATE_KEYS})"
            ));
        }
        let Some(params) = section.get("params") else {
            return Err(format!(
                "{at}.params: missing; list the parameters: params = [{{ name = \"…\", max_length = 30 }}]"
            ));
        };
        let toml::Value::Array(params) = params else {
            return Err(format!(
                "{at}.params: expected an array of {{ name = \"…\", … }} tables"
            ));
        };
        let mut parsed: Vec<ParamSpec> = Vec::with_capacity(params.len());
        for (i, p) in params.iter().enumerate() {
            let param = parse_param(p, &format!("{at}.params[{i}]"))?;
            if parsed.iter().any(|q| q.name == param.name) {
                return Err(format!(
                    "{at}.params[{i}].name: `{}` is declared twice",
                    param.name
                ));
            }
            parsed.push(param);
        }
        out.insert(
            id.clone(),
            TemplateSpec {
                template_id: id.clone(),
                enabled: None,
                status: None,
                params: parsed,
                source: TemplateSource::Declared,
            },
        );
    }
    Ok(out)
}

fn parse_param(value: &toml::Value, at: &str) -> Result<ParamSpec, String> {
    let toml::Value::Table(t) = value else {
        return Err(format!(
            "{at}: expected a table {{ name = \"…\", max_length = 30 }}"
        ));
    };
    if let Some(key) = t
        .keys()
        .find(|k| !PARAM_KEYS.split(", ").any(|known| known == k.as_str()))
    {
        return Err(format!(
            "{at}.{key}: unknown key (a parameter holds: {PARAM_KEYS})"
        ));
    }
    let name = match t.get("name") {
        None => {
            return Err(format!(
                "{at}.name: missing (the template's parameter name)"
            ))
        }
        Some(toml::Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(toml::Value::String(_)) => return Err(format!("{at}.name: is empty")),
        Some(_) => return Err(format!("{at}.name: expected a string")),
    };
    let required = boolean(t, "required", at)?.unwrap_or(true);
    let accept_null = boolean(t, "accept_null", at)?.unwrap_or(!required);
    let min_length = length(t, "min_length", at)?;
    let max_length = length(t, "max_length", at)?;
    if let (Some(min), Some(max)) = (min_length, max_length) {
        if min > max {
            return Err(format!(
                "{at}: min_length {min} is greater than max_length {max}"
            ));
        }
    }
    Ok(ParamSpec {
        name,
        required,
        min_length,
        max_length,
        accept_null,
    })
}

fn boolean(t: &toml::Table, key: &str, at: &str) -> Result<Option<bool>, String> {
    match t.get(key) {
        None => Ok(None),
        Some(toml::Value::Boolean(b)) => Ok(Some(*b)),
        Some(_) => Err(format!("{at}.{key}: expected true or false")),
    }
}

fn length(t: &toml::Table, key: &str, at: &str) -> Result<Option<u32>, String> {
    match t.get(key) {
        None => Ok(None),
        Some(toml::Value::Integer(n)) => u32::try_from(*n)
            .map(Some)
            .map_err(|_| format!("{at}.{key}: {n} is out of range (0 to {})", u32::MAX)),
        Some(_) => Err(format!("{at}.{key}: expected a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<HashMap<String, TemplateSpec>, String> {
        let table: toml::Table = toml::from_str(text).unwrap();
        parse_templates(&table["templates"])
    }

    #[test]
    fn the_documented_section_parses_with_its_defaults() {
        let t = parse(
            r#"
[templates.217489]
params = [
  { name = "customer_name", required = true, max_length = 30 },
  { name = "amount",        required = true, max_length = 20 },
  { name = "due_date",      required = false, min_length = 8, max_length = 10 },
  { name = "note" },
]
"#,
        )
        .unwrap();
        let s = &t["217489"];
        assert_eq!(s.template_id, "217489");
        assert_eq!(s.source, TemplateSource::Declared);
        assert_eq!(s.enabled, None);
        let names: Vec<&str> = s.params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["customer_name", "amount", "due_date", "note"]);
        assert_eq!(
            s.params[2],
            ParamSpec {
                name: "due_date".into(),
                required: false,
                min_length: Some(8),
                max_length: Some(10),
                accept_null: true,
            }
        );
        let note = &s.params[3];
        assert!(note.required && !note.accept_null);
        assert_eq!((note.min_length, note.max_length), (None, None));
    }

    #[test]
    fn a_malformed_section_names_the_key_at_fault() {
        let cases = [
            (
                "[templates.217489]\nparams = [{ name = \"a\" }, { name = \"b\", max_length = \"30\" }]",
                "templates.217489.params[1].max_length: expected a number",
            ),
            (
                "[templates.1]\nparams = [{ name = \"a\", max_lenght = 3 }]",
                "templates.1.params[0].max_lenght: unknown key",
            ),
            (
                "[templates.1]\nparams = [{ required = true }]",
                "templates.1.params[0].name: missing",
            ),
            (
                "[templates.1]\nparams = [{ name = \"a\", required = \"yes\" }]",
                "templates.1.params[0].required: expected true or false",
            ),
            (
                "[templates.1]\nparams = [{ name = \"a\", min_length = -1 }]",
                "templates.1.params[0].min_length: -1 is out of range",
            ),
            (
                "[templates.1]\nparams = [{ name = \"a\", min_length = 9, max_length = 3 }]",
                "templates.1.params[0]: min_length 9 is greater than max_length 3",
            ),
            (
                "[templates.1]\nparams = [{ name = \"a\" }, { name = \"a\" }]",
                "templates.1.params[1].name: `a` is declared twice",
            ),
            ("[templates.1]\nparam = []", "templates.1.param: unknown key"),
            ("[templates.1]\n", "templates.1.params: missing"),
            ("[templates.1]\nparams = 3", "templates.1.params: expected an array"),
            ("[templates]\n1 = 2", "templates.1: expected a table"),
            ("templates = 1", "templates: expected tables"),
        ];
        for (text, want) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.starts_with(want), "{text:?}\n got: {e}\nwant: {want}");
        }
    }
}
