//! `RUN --mount=` specs: CSV fields of `key=value`, as BuildKit reads them.

use std::borrow::Cow;

use super::super::ast::{Mount, MountType};
use super::super::error::{suggest, Error};
use super::flags::Flags;
use super::Parser;

impl Parser<'_> {
    /// A `--mount=` value: comma-separated `key=value` fields (CSV quoting allowed).
    pub(super) fn mount(&self, fl: &Flags, flag: usize, spec: &str) -> Result<Mount, Error> {
        const KEYS: [&str; 19] = [
            "type",
            "target",
            "dst",
            "destination",
            "source",
            "src",
            "from",
            "readonly",
            "ro",
            "readwrite",
            "rw",
            "id",
            "sharing",
            "mode",
            "uid",
            "gid",
            "required",
            "size",
            "env",
        ];
        let mut m = Mount::default();
        // The flag's offset is only worked out when there is an error to report.
        let err = |msg: String, hint: Option<String>| self.err(fl.l, fl.off(flag), msg, hint);
        let mut field_fn = |field: &str| -> Result<(), Error> {
            let (key, value) = match field.split_once('=') {
                Some((k, v)) => (lower(k.trim()), Some(v.to_string())),
                None => (lower(field.trim()), None),
            };
            let boolean = |v: &Option<String>| -> Result<bool, Error> {
                match v.as_deref() {
                    None => Ok(true),
                    Some(s) => parse_strconv_bool(s).ok_or_else(|| {
                        let msg = format!("invalid value \"{s}\" for mount option {key}");
                        err(msg, Some("use true or false".into()))
                    }),
                }
            };
            let need = |v: Option<String>| -> Result<String, Error> {
                v.ok_or_else(|| {
                    err(
                        format!("mount option {key} requires a value"),
                        Some(format!("write {key}=<value>")),
                    )
                })
            };
            match &*key {
                "type" => {
                    let v = need(value)?;
                    m.kind = Some(MountType::parse(&v).ok_or_else(|| {
                        err(
                            format!("unsupported mount type \"{v}\""),
                            suggest(&v, &MountType::ALL)
                                .map(|s| format!("did you mean {s}?"))
                                .or_else(|| Some("use bind, cache, tmpfs, secret or ssh".into())),
                        )
                    })?);
                }
                "target" | "dst" | "destination" => m.target = Some(need(value)?),
                "source" | "src" => m.source = Some(need(value)?),
                "from" => m.from = Some(need(value)?),
                "readonly" | "ro" => m.readonly = Some(boolean(&value)?),
                "readwrite" | "rw" => m.readonly = Some(!boolean(&value)?),
                "id" => m.id = Some(need(value)?),
                "sharing" => {
                    let v = need(value)?;
                    if !v.contains('$')
                        && !["shared", "private", "locked"]
                            .contains(&v.to_ascii_lowercase().as_str())
                    {
                        return Err(err(
                            format!("unsupported sharing value \"{v}\""),
                            Some("use shared, private or locked".into()),
                        ));
                    }
                    m.sharing = Some(v);
                }
                "mode" => m.mode = Some(need(value)?),
                "uid" => m.uid = Some(need(value)?),
                "gid" => m.gid = Some(need(value)?),
                "required" => m.required = Some(boolean(&value)?),
                "size" => m.size = Some(need(value)?),
                "env" => m.env = Some(need(value)?),
                "" => {}
                other => {
                    return Err(err(
                        format!("unexpected key '{other}' in '{spec}'"),
                        suggest(other, &KEYS).map(|s| format!("did you mean {s}?")),
                    ))
                }
            }
            Ok(())
        };
        // Unquoted options (the common case) are split without allocating.
        if spec.contains('"') {
            for field in csv_fields(spec) {
                field_fn(&field)?;
            }
        } else {
            for field in spec.split(',') {
                field_fn(field)?;
            }
        }
        let t = m.mount_type();
        if m.target.is_none() && matches!(t, MountType::Bind | MountType::Cache | MountType::Tmpfs)
        {
            return Err(err(
                format!("mount type {} requires a target", t.as_str()),
                Some("add target=<path>".into()),
            ));
        }
        if m.from.is_some() && matches!(t, MountType::Tmpfs | MountType::Secret | MountType::Ssh) {
            return Err(err(
                format!("from is not allowed for mount type {}", t.as_str()),
                None,
            ));
        }
        Ok(m)
    }
}

/// Go's `strconv.ParseBool`, which BuildKit uses for `--mount` options
/// (`readonly=1`, `ro=t`...), unlike instruction flags.
fn parse_strconv_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// ASCII lower case, allocating only when something changes.
fn lower(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// Split a CSV record (`a=b,"c=d,e"`) into fields, honouring double quotes.
fn csv_fields(s: &str) -> Vec<Cow<'_, str>> {
    if !s.contains('"') {
        return s.split(',').map(Cow::Borrowed).collect();
    }
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_q = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if in_q && chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            '"' => in_q = !in_q,
            ',' if !in_q => out.push(Cow::Owned(std::mem::take(&mut cur))),
            _ => cur.push(c),
        }
    }
    out.push(Cow::Owned(cur));
    out
}
