//! The arguments of `#[task(...)]`: parsed into [`TaskArgs`] (each argument at most once, kept
//! with its keyword and its tokens for error spans), then checked into the [`Policies`] that the
//! generated `TaskSpec` holds.

use owlclaw_core::cron::{parse_timezone, CatchUp, CronExpr, Overlap};
use owlclaw_core::duration::parse_duration;
use owlclaw_core::ratelimit::{validate_rate_limit_name, RateLimitUse, MAX_UNITS};
use owlclaw_core::retry::Backoff;
use owlclaw_core::task::{
    check_both_limits, parse_requires, validate_event_key, validate_key_path, validate_priority,
    validate_retries, validate_task_name, validate_timeout, Concurrency, ConcurrencyStrategy,
    MAX_CONCURRENCY,
};
use proc_macro2::TokenTree;
use quote::ToTokens;
use syn::parse::{Parse, ParseStream};
use syn::{Expr, Lit, LitStr, Token, UnOp};

mod kw {
    syn::custom_keyword!(name);
    syn::custom_keyword!(cron);
    syn::custom_keyword!(timezone);
    syn::custom_keyword!(every);
    syn::custom_keyword!(overlap);
    syn::custom_keyword!(catch_up);
    syn::custom_keyword!(retries);
    syn::custom_keyword!(timeout);
    syn::custom_keyword!(priority);
    syn::custom_keyword!(backoff_initial);
    syn::custom_keyword!(backoff_factor);
    syn::custom_keyword!(backoff_max);
    syn::custom_keyword!(requires);
    syn::custom_keyword!(on_event);
    syn::custom_keyword!(concurrency);
    syn::custom_keyword!(concurrency_key);
    syn::custom_keyword!(concurrency_strategy);
    syn::custom_keyword!(rate_limit);
    syn::custom_keyword!(rate_limit_units);
    syn::custom_keyword!(rate_limit_key);
    syn::custom_keyword!(parents);
    syn::custom_keyword!(expires);
}

/// Every argument `#[task]` accepts, in the order the docs list them.
pub(crate) const VALID_KEYS: &[&str] = &[
    "name",
    "cron",
    "every",
    "timezone",
    "overlap",
    "catch_up",
    "retries",
    "timeout",
    "priority",
    "backoff_initial",
    "backoff_factor",
    "backoff_max",
    "requires",
    "on_event",
    "concurrency",
    "concurrency_key",
    "concurrency_strategy",
    "rate_limit",
    "rate_limit_units",
    "rate_limit_key",
    "parents",
    "expires",
];

/// The arguments as written. Strings are string literals; numbers are kept as expressions so that
/// `retries = -1` is reported as "must be between 0 and 100" on `-1`, not as a syntax error.
#[derive(Debug, Default)]
pub(crate) struct TaskArgs {
    pub(crate) name: Option<(kw::name, LitStr)>,
    pub(crate) cron: Option<(kw::cron, LitStr)>,
    pub(crate) timezone: Option<(kw::timezone, LitStr)>,
    pub(crate) every: Option<(kw::every, LitStr)>,
    pub(crate) overlap: Option<(kw::overlap, LitStr)>,
    pub(crate) catch_up: Option<(kw::catch_up, LitStr)>,
    pub(crate) retries: Option<(kw::retries, Expr)>,
    pub(crate) timeout: Option<(kw::timeout, LitStr)>,
    pub(crate) priority: Option<(kw::priority, Expr)>,
    pub(crate) backoff_initial: Option<(kw::backoff_initial, LitStr)>,
    pub(crate) backoff_factor: Option<(kw::backoff_factor, Expr)>,
    pub(crate) backoff_max: Option<(kw::backoff_max, LitStr)>,
    pub(crate) requires: Option<(kw::requires, LitStr)>,
    pub(crate) on_event: Option<(kw::on_event, LitStr)>,
    pub(crate) concurrency: Option<(kw::concurrency, Expr)>,
    pub(crate) concurrency_key: Option<(kw::concurrency_key, LitStr)>,
    pub(crate) concurrency_strategy: Option<(kw::concurrency_strategy, LitStr)>,
    pub(crate) rate_limit: Option<(kw::rate_limit, LitStr)>,
    pub(crate) rate_limit_units: Option<(kw::rate_limit_units, Expr)>,
    pub(crate) rate_limit_key: Option<(kw::rate_limit_key, LitStr)>,
    pub(crate) expires: Option<(kw::expires, LitStr)>,
    /// The tasks of its workflow it waits for: `parents = [validate, map]`.
    pub(crate) parents: Option<(kw::parents, Vec<syn::Path>)>,
}

impl Parse for TaskArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<TaskArgs> {
        let mut args = TaskArgs::default();
        while !input.is_empty() {
            if input.peek(kw::name) {
                parse_arg(input, &mut args.name, |input| {
                    parse_str(input, "a task name such as \"send-email\"")
                })?;
            } else if input.peek(kw::cron) {
                parse_arg(input, &mut args.cron, |input| {
                    parse_str(input, "a cron expression such as \"*/5 * * * *\"")
                })?;
            } else if input.peek(kw::timezone) {
                parse_arg(input, &mut args.timezone, |input| {
                    parse_str(input, "an IANA time zone such as \"Europe/Paris\"")
                })?;
            } else if input.peek(kw::every) {
                parse_arg(input, &mut args.every, |input| {
                    parse_str(input, "an interval such as \"30s\"")
                })?;
            } else if input.peek(kw::overlap) {
                parse_arg(input, &mut args.overlap, |input| {
                    parse_str(input, "an overlap policy such as \"skip\"")
                })?;
            } else if input.peek(kw::catch_up) {
                parse_arg(input, &mut args.catch_up, |input| {
                    parse_str(input, "a catch-up policy such as \"all\"")
                })?;
            } else if input.peek(kw::retries) {
                parse_arg(input, &mut args.retries, |input| input.parse())?;
            } else if input.peek(kw::timeout) {
                parse_arg(input, &mut args.timeout, |input| {
                    parse_str(input, "a duration with a unit such as \"30s\"")
                })?;
            } else if input.peek(kw::priority) {
                parse_arg(input, &mut args.priority, |input| input.parse())?;
            } else if input.peek(kw::backoff_initial) {
                parse_arg(input, &mut args.backoff_initial, |input| {
                    parse_str(input, "a duration with a unit such as \"1s\"")
                })?;
            } else if input.peek(kw::backoff_factor) {
                parse_arg(input, &mut args.backoff_factor, |input| input.parse())?;
            } else if input.peek(kw::backoff_max) {
                parse_arg(input, &mut args.backoff_max, |input| {
                    parse_str(input, "a duration with a unit such as \"5m\"")
                })?;
            } else if input.peek(kw::requires) {
                parse_arg(input, &mut args.requires, |input| {
                    parse_str(input, "worker labels such as \"gpu\" or \"gpu, region=eu\"")
                })?;
            } else if input.peek(kw::on_event) {
                parse_arg(input, &mut args.on_event, |input| {
                    parse_str(input, "an event key such as \"order.paid\"")
                })?;
            } else if input.peek(kw::concurrency) {
                parse_arg(input, &mut args.concurrency, |input| input.parse())?;
            } else if input.peek(kw::concurrency_key) {
                parse_arg(input, &mut args.concurrency_key, |input| {
                    parse_str(input, "an input field such as \"customer_id\"")
                })?;
            } else if input.peek(kw::concurrency_strategy) {
                parse_arg(input, &mut args.concurrency_strategy, |input| {
                    parse_str(
                        input,
                        "\"queue\", \"cancel_in_progress\" or \"cancel_newest\"",
                    )
                })?;
            } else if input.peek(kw::rate_limit_units) {
                parse_arg(input, &mut args.rate_limit_units, |input| input.parse())?;
            } else if input.peek(kw::rate_limit_key) {
                parse_arg(input, &mut args.rate_limit_key, |input| {
                    parse_str(input, "an input field such as \"customer_id\"")
                })?;
            } else if input.peek(kw::expires) {
                parse_arg(input, &mut args.expires, |input| {
                    parse_str(input, "a duration with a unit such as \"1h\"")
                })?;
            } else if input.peek(kw::parents) {
                parse_arg(input, &mut args.parents, |input| {
                    let content;
                    syn::bracketed!(content in input);
                    let list =
                        syn::punctuated::Punctuated::<syn::Path, Token![,]>::parse_terminated(
                            &content,
                        )?;
                    Ok(list.into_iter().collect())
                })?;
            } else if input.peek(kw::rate_limit) {
                parse_arg(input, &mut args.rate_limit, |input| {
                    parse_str(input, "a rate limit's name such as \"stripe\"")
                })?;
            } else {
                return Err(unknown_argument(input));
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok(args)
    }
}

/// Parses `key = value` into `slot`, refusing a key given twice (the error is on the second one).
fn parse_arg<K, V>(
    input: ParseStream<'_>,
    slot: &mut Option<(K, V)>,
    value: impl FnOnce(ParseStream<'_>) -> syn::Result<V>,
) -> syn::Result<()>
where
    K: Parse + ToTokens,
{
    let key: K = input.parse()?;
    input.parse::<Token![=]>()?;
    let value = value(input)?;
    set_once(slot, key, value)
}

/// Stores an argument, or reports that it was already given, on the second keyword.
fn set_once<K: ToTokens, V>(slot: &mut Option<(K, V)>, key: K, value: V) -> syn::Result<()> {
    if slot.is_some() {
        let name = key.to_token_stream().to_string();
        return Err(syn::Error::new_spanned(
            key,
            format!("`{name}` is given twice"),
        ));
    }
    *slot = Some((key, value));
    Ok(())
}

/// A string literal, or an error on the value saying what was expected.
fn parse_str(input: ParseStream<'_>, expected: &str) -> syn::Result<LitStr> {
    if input.peek(LitStr) {
        return input.parse();
    }
    let value: Expr = input.parse()?;
    Err(syn::Error::new_spanned(
        value,
        format!("expected a string literal: {expected}"),
    ))
}

/// The error for anything that is not one of [`VALID_KEYS`], on that token.
fn unknown_argument(input: ParseStream<'_>) -> syn::Error {
    let valid = VALID_KEYS.join(", ");
    let token: Option<TokenTree> = input.parse().ok();
    let Some(token) = token else {
        return input.error(format!("expected an argument; valid arguments: {valid}"));
    };
    let message = match &token {
        TokenTree::Ident(ident) => {
            let key = ident.to_string();
            match closest_key(&key) {
                Some(suggestion) => format!(
                    "unknown argument `{key}` (did you mean `{suggestion}`?); \
                     valid arguments: {valid}"
                ),
                None => format!("unknown argument `{key}`; valid arguments: {valid}"),
            }
        }
        _ => format!("expected an argument such as `retries = 3`; valid arguments: {valid}"),
    };
    syn::Error::new_spanned(token, message)
}

/// The valid key closest to a misspelled one (`retry` → `retries`), if any is close.
fn closest_key(key: &str) -> Option<&'static str> {
    VALID_KEYS
        .iter()
        .map(|valid| (strsim::levenshtein(key, valid), *valid))
        .filter(|(distance, valid)| {
            let common_prefix = key
                .chars()
                .zip(valid.chars())
                .take_while(|(a, b)| a == b)
                .count();
            *distance <= 2 || common_prefix >= 4
        })
        .min()
        .map(|(_, valid)| valid)
}

/// The checked policies. `None` is "not given": the generated `TaskSpec` takes
/// `TaskSpec::DEFAULT`'s value.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Policies {
    pub(crate) name: Option<String>,
    pub(crate) cron: Option<String>,
    pub(crate) timezone: Option<String>,
    pub(crate) overlap: Option<String>,
    pub(crate) catch_up: Option<String>,
    pub(crate) retries: Option<u32>,
    pub(crate) timeout_ms: Option<u64>,
    pub(crate) priority: Option<u8>,
    pub(crate) backoff_initial_ms: Option<u64>,
    pub(crate) backoff_factor: Option<f64>,
    pub(crate) backoff_max_ms: Option<u64>,
    pub(crate) requires: Option<Vec<String>>,
    pub(crate) on_event: Option<String>,
    pub(crate) concurrency: Option<u32>,
    pub(crate) concurrency_key: Option<String>,
    pub(crate) concurrency_strategy: Option<String>,
    pub(crate) rate_limit: Option<String>,
    pub(crate) rate_limit_units: Option<u32>,
    pub(crate) rate_limit_key: Option<String>,
    pub(crate) expires_ms: Option<u64>,
}

/// Collects every error, so that two wrong arguments are two errors, each on its own token.
#[derive(Debug, Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// Keeps the value, or records the error.
    pub(crate) fn ok<T>(&mut self, result: syn::Result<T>) -> Option<T> {
        result.map_err(|e| self.push(e)).ok()
    }

    pub(crate) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

impl TaskArgs {
    /// Checks the rate limit's arguments (see [`TaskArgs::check`]).
    fn check_rate_limit(&self, policies: &mut Policies, errors: &mut Errors) {
        if let Some((_, lit)) = &self.rate_limit {
            let name = lit.value();
            policies.rate_limit = errors.ok(validate_rate_limit_name(&name)
                .map(|()| name)
                .map_err(|e| spanned(lit, e)));
            if let (Some(_), Some((_, rate_key))) = (&self.concurrency, &self.rate_limit_key) {
                let concurrency = Concurrency {
                    max: 1,
                    key: self.concurrency_key.as_ref().map(|(_, l)| l.value()),
                    strategy: ConcurrencyStrategy::default(),
                };
                let rate = RateLimitUse {
                    name: lit.value(),
                    units: 1,
                    key: Some(rate_key.value()),
                };
                if let Err(e) = check_both_limits(&concurrency, &rate) {
                    errors.push(spanned(rate_key, e));
                }
            }
        } else {
            let keys = [
                self.rate_limit_units
                    .as_ref()
                    .map(|(k, _)| k.to_token_stream()),
                self.rate_limit_key
                    .as_ref()
                    .map(|(k, _)| k.to_token_stream()),
            ];
            for key in keys.into_iter().flatten() {
                errors.push(syn::Error::new_spanned(
                    key,
                    "this applies to a rate limit: add `rate_limit = \"name\"` or remove it",
                ));
            }
        }
        if let Some((_, expr)) = &self.rate_limit_units {
            policies.rate_limit_units = errors.ok(integer(expr, "rate_limit_units", |n| {
                if (1..=i128::from(MAX_UNITS)).contains(&n) {
                    Ok(())
                } else {
                    Err(format!(
                        "`rate_limit_units` must be between 1 and {MAX_UNITS} units, got {n}"
                    ))
                }
            }));
        }
        if let Some((_, lit)) = &self.rate_limit_key {
            let path = lit.value();
            policies.rate_limit_key = errors.ok(validate_key_path(&path)
                .map(|()| path)
                .map_err(|e| spanned(lit, e)));
        }
    }

    /// Checks every argument with owlclaw-core's validators, each error on the offending literal.
    ///
    /// Returns the valid policies even when some are wrong (the wrong ones are left out), so that
    /// the typed handle can still be generated and the user sees only the errors of the arguments.
    pub(crate) fn check(&self, errors: &mut Errors) -> Policies {
        let mut policies = Policies::default();
        if let Some((_, lit)) = &self.name {
            let name = lit.value();
            policies.name = errors.ok(validate_task_name(&name)
                .map(|()| name)
                .map_err(|e| spanned(lit, e)));
        }
        if let Some((_, lit)) = &self.cron {
            let cron = lit.value();
            policies.cron = errors.ok(CronExpr::parse(&cron)
                .map(|_| cron)
                .map_err(|e| spanned(lit, e)));
        }
        if let Some((key, lit)) = &self.every {
            if self.cron.is_some() {
                errors.push(syn::Error::new_spanned(
                    key,
                    "give either `cron` or `every`, not both",
                ));
            } else {
                let every = format!("@every {}", lit.value());
                policies.cron = errors.ok(CronExpr::parse(&every)
                    .map(|_| every)
                    .map_err(|e| spanned(lit, e)));
            }
        }
        let scheduled = self.cron.is_some() || self.every.is_some();
        if let Some((key, lit)) = &self.overlap {
            if !scheduled {
                errors.push(syn::Error::new_spanned(
                    key,
                    "`overlap` only applies to a schedule: add `cron = \"...\"` or `every = \"...\"`",
                ));
            } else {
                policies.overlap = errors.ok(Overlap::parse(&lit.value())
                    .map(|o| o.as_str().to_string())
                    .map_err(|e| spanned(lit, e)));
            }
        }
        if let Some((key, lit)) = &self.catch_up {
            if !scheduled {
                errors.push(syn::Error::new_spanned(
                    key,
                    "`catch_up` only applies to a schedule: add `cron = \"...\"` or `every = \"...\"`",
                ));
            } else {
                policies.catch_up = errors.ok(CatchUp::parse(&lit.value())
                    .map(|c| c.as_str().to_string())
                    .map_err(|e| spanned(lit, e)));
            }
        }
        if let Some((key, lit)) = &self.timezone {
            if self.cron.is_none() {
                errors.push(syn::Error::new_spanned(
                    key,
                    "`timezone` only applies to a cron schedule: add `cron = \"...\"` or remove it",
                ));
            } else {
                let timezone = lit.value();
                policies.timezone = errors.ok(parse_timezone(&timezone)
                    .map(|_| timezone)
                    .map_err(|e| spanned(lit, e)));
            }
        }
        if let Some((_, lit)) = &self.requires {
            policies.requires =
                errors.ok(parse_requires(&lit.value()).map_err(|e| spanned(lit, e)));
        }
        if let Some((_, lit)) = &self.on_event {
            let key = lit.value();
            policies.on_event = errors.ok(validate_event_key(&key)
                .map(|()| key)
                .map_err(|e| spanned(lit, e)));
        }
        if let Some((_, expr)) = &self.concurrency {
            policies.concurrency = errors.ok(integer(expr, "concurrency", |n| {
                if (1..=i128::from(MAX_CONCURRENCY)).contains(&n) {
                    Ok(())
                } else {
                    Err(format!(
                        "`concurrency` must be between 1 and {MAX_CONCURRENCY} runs, got {n}"
                    ))
                }
            }));
        }
        if self.concurrency.is_none() {
            let keys = [
                self.concurrency_key
                    .as_ref()
                    .map(|(k, _)| k.to_token_stream()),
                self.concurrency_strategy
                    .as_ref()
                    .map(|(k, _)| k.to_token_stream()),
            ];
            for key in keys.into_iter().flatten() {
                errors.push(syn::Error::new_spanned(
                    key,
                    "this applies to a concurrency limit: add `concurrency = N` or remove it",
                ));
            }
        }
        if let Some((_, lit)) = &self.concurrency_key {
            let path = lit.value();
            policies.concurrency_key = errors.ok(validate_key_path(&path)
                .map(|()| path)
                .map_err(|e| spanned(lit, e)));
        }
        if let Some((_, lit)) = &self.concurrency_strategy {
            let name = lit.value();
            policies.concurrency_strategy = errors.ok(ConcurrencyStrategy::parse(&name)
                .map(|_| name)
                .map_err(|e| spanned(lit, e)));
        }
        self.check_rate_limit(&mut policies, errors);
        if let Some((_, lit)) = &self.expires {
            policies.expires_ms = errors.ok(duration_ms(lit).and_then(|ms| {
                if ms == 0 {
                    Err(spanned(
                        lit,
                        "`expires` must be longer than zero".to_string(),
                    ))
                } else {
                    Ok(ms)
                }
            }));
        }
        if let Some((_, expr)) = &self.retries {
            policies.retries = errors.ok(integer(expr, "retries", validate_retries));
        }
        if let Some((_, expr)) = &self.priority {
            policies.priority = errors.ok(integer(expr, "priority", validate_priority));
        }
        if let Some((_, lit)) = &self.timeout {
            policies.timeout_ms = errors.ok(duration_ms(lit).and_then(|ms| {
                validate_timeout(std::time::Duration::from_millis(ms))
                    .map_err(|e| spanned(lit, e))?;
                Ok(ms)
            }));
        }
        let initial = self
            .backoff_initial
            .as_ref()
            .map(|(_, lit)| (lit, errors.ok(duration_ms(lit))));
        let max = self
            .backoff_max
            .as_ref()
            .map(|(_, lit)| (lit, errors.ok(duration_ms(lit))));
        let factor = self
            .backoff_factor
            .as_ref()
            .map(|(_, expr)| (expr, errors.ok(float(expr))));
        policies.backoff_initial_ms = initial.and_then(|(_, ms)| ms);
        policies.backoff_max_ms = max.and_then(|(_, ms)| ms);
        policies.backoff_factor = factor.and_then(|(_, f)| f);
        let all_parsed = [
            initial.map(|(_, ms)| ms.is_some()),
            max.map(|(_, ms)| ms.is_some()),
            factor.map(|(_, f)| f.is_some()),
        ]
        .into_iter()
        .all(|parsed| parsed != Some(false));
        if all_parsed {
            let default = Backoff::default();
            let backoff = Backoff {
                initial: policies
                    .backoff_initial_ms
                    .map_or(default.initial, std::time::Duration::from_millis),
                factor: policies.backoff_factor.unwrap_or(default.factor),
                max: policies
                    .backoff_max_ms
                    .map_or(default.max, std::time::Duration::from_millis),
            };
            if let Err(message) = backoff.validate() {
                let factor_ok = (1.0..=100.0).contains(&backoff.factor);
                let error = match (factor, initial, max) {
                    (Some((expr, _)), _, _) if !factor_ok => syn::Error::new_spanned(expr, message),
                    (_, _, Some((lit, _))) | (_, Some((lit, _)), None) => spanned(lit, message),
                    _ => syn::Error::new(proc_macro2::Span::call_site(), message),
                };
                errors.push(error);
                policies.backoff_initial_ms = None;
                policies.backoff_factor = None;
                policies.backoff_max_ms = None;
            }
        }
        policies
    }
}

fn spanned(lit: &LitStr, message: String) -> syn::Error {
    syn::Error::new(lit.span(), message)
}

/// A duration literal in milliseconds.
fn duration_ms(lit: &LitStr) -> syn::Result<u64> {
    let duration = parse_duration(&lit.value()).map_err(|e| spanned(lit, e))?;
    u64::try_from(duration.as_millis())
        .map_err(|_| spanned(lit, format!("duration {:?} is too large", lit.value())))
}

/// An integer literal, possibly negated, as written: `3`, `-1`.
fn int_literal(expr: &Expr) -> Option<syn::Result<i128>> {
    match expr {
        Expr::Lit(lit) => match &lit.lit {
            Lit::Int(int) => Some(int.base10_parse()),
            _ => None,
        },
        Expr::Unary(unary) if matches!(unary.op, UnOp::Neg(_)) => {
            int_literal(&unary.expr).map(|value| value.map(|v| -v))
        }
        Expr::Group(group) => int_literal(&group.expr),
        Expr::Paren(paren) => int_literal(&paren.expr),
        _ => None,
    }
}

/// A float or integer literal, possibly negated: `2.0`, `2`, `-1.5`.
fn float(expr: &Expr) -> syn::Result<f64> {
    fn literal(expr: &Expr) -> Option<syn::Result<f64>> {
        match expr {
            Expr::Lit(lit) => match &lit.lit {
                Lit::Float(float) => Some(float.base10_parse()),
                Lit::Int(int) => Some(int.base10_parse()),
                _ => None,
            },
            Expr::Unary(unary) if matches!(unary.op, UnOp::Neg(_)) => {
                literal(&unary.expr).map(|value| value.map(|v: f64| -v))
            }
            Expr::Group(group) => literal(&group.expr),
            Expr::Paren(paren) => literal(&paren.expr),
            _ => None,
        }
    }
    match literal(expr) {
        Some(Ok(value)) if value.is_finite() => Ok(value),
        Some(Ok(_)) => Err(syn::Error::new_spanned(
            expr,
            "backoff factor must be between 1 and 100",
        )),
        Some(Err(e)) => Err(syn::Error::new_spanned(expr, e)),
        None => Err(syn::Error::new_spanned(
            expr,
            "expected a number: `backoff_factor` is the growth factor of the delay, such as `2.0`",
        )),
    }
}

/// An integer argument, checked by `validate` (a core validator), error on the whole value.
fn integer<T: TryFrom<i128>>(
    expr: &Expr,
    key: &str,
    validate: fn(i128) -> Result<(), String>,
) -> syn::Result<T> {
    let value = match int_literal(expr) {
        Some(Ok(value)) => value,
        Some(Err(e)) => return Err(syn::Error::new_spanned(expr, format!("`{key}`: {e}"))),
        None => {
            return Err(syn::Error::new_spanned(
                expr,
                format!("expected an integer literal for `{key}`, such as `3`"),
            ))
        }
    };
    validate(value).map_err(|e| syn::Error::new_spanned(expr, e))?;
    T::try_from(value)
        .map_err(|_| syn::Error::new_spanned(expr, format!("`{key}` is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(args: &str) -> Result<Policies, String> {
        let args: TaskArgs = syn::parse_str(args).map_err(|e| e.to_string())?;
        let mut errors = Errors::default();
        let policies = args.check(&mut errors);
        match errors.finish() {
            Ok(()) => Ok(policies),
            Err(e) => Err(e
                .into_iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(" | ")),
        }
    }

    #[test]
    fn every_argument_is_parsed_and_converted() {
        let policies = check(
            r#"name = "send-email", cron = "*/5 * * * *", timezone = "Europe/Paris", retries = 3,
               timeout = "1m30s", priority = 7, backoff_initial = "500ms", backoff_factor = 1.5,
               backoff_max = "1m", requires = "gpu, region = eu", on_event = "order.paid",
               concurrency = 5, concurrency_key = "customer.id",
               concurrency_strategy = "cancel_newest","#,
        )
        .unwrap();
        assert_eq!(
            policies,
            Policies {
                name: Some("send-email".into()),
                cron: Some("*/5 * * * *".into()),
                timezone: Some("Europe/Paris".into()),
                retries: Some(3),
                timeout_ms: Some(90_000),
                priority: Some(7),
                backoff_initial_ms: Some(500),
                backoff_factor: Some(1.5),
                backoff_max_ms: Some(60_000),
                requires: Some(vec!["gpu".into(), "region=eu".into()]),
                on_event: Some("order.paid".into()),
                concurrency: Some(5),
                concurrency_key: Some("customer.id".into()),
                concurrency_strategy: Some("cancel_newest".into()),
                ..Policies::default()
            }
        );
        let rated = check(
            r#"rate_limit = "stripe", rate_limit_units = 2, rate_limit_key = "/customer/id""#,
        )
        .unwrap();
        assert_eq!(rated.rate_limit.as_deref(), Some("stripe"));
        assert_eq!(rated.rate_limit_units, Some(2));
        assert_eq!(rated.rate_limit_key.as_deref(), Some("/customer/id"));
        assert_eq!(check("").unwrap(), Policies::default());
        assert_eq!(
            check("backoff_factor = 3").unwrap().backoff_factor,
            Some(3.0)
        );
    }

    #[test]
    fn syntax_errors_name_the_problem() {
        assert_eq!(
            check("retries = 1, retries = 2").unwrap_err(),
            "`retries` is given twice"
        );
        let unknown = check("retry = 1").unwrap_err();
        assert!(
            unknown.starts_with(
                "unknown argument `retry` (did you mean `retries`?); valid arguments: name, cron,"
            ),
            "{unknown}"
        );
        assert_eq!(
            check("colour = 1").unwrap_err(),
            "unknown argument `colour`; valid arguments: name, cron, every, timezone, overlap, \
             catch_up, retries, timeout, priority, backoff_initial, backoff_factor, backoff_max, requires, on_event, \
             concurrency, concurrency_key, concurrency_strategy, rate_limit, rate_limit_units, \
             rate_limit_key, parents, expires"
        );
        assert_eq!(
            check("rate_limit_units = 2").unwrap_err(),
            "this applies to a rate limit: add `rate_limit = \"name\"` or remove it"
        );
        assert_eq!(
            check("rate_limit = \"stripe\", rate_limit_units = 0").unwrap_err(),
            "`rate_limit_units` must be between 1 and 1000000 units, got 0"
        );
        assert!(check("rate_limit = \"a b\"")
            .unwrap_err()
            .starts_with("rate limit name \"a b\" contains ' '"));
        let both = check("concurrency = 2, rate_limit = \"stripe\"").unwrap();
        assert_eq!(
            (both.concurrency, both.rate_limit.as_deref()),
            (Some(2), Some("stripe"))
        );
        assert!(check(
            "concurrency = 2, concurrency_key = \"customer\", rate_limit = \"stripe\", \
             rate_limit_key = \"customer\""
        )
        .is_ok());
        assert!(check(
            "concurrency = 2, concurrency_key = \"customer\", rate_limit = \"stripe\", \
             rate_limit_key = \"region\""
        )
        .unwrap_err()
        .starts_with("rate limit key \"region\" with concurrency key \"customer\""));
        assert_eq!(
            check("concurrency = 0").unwrap_err(),
            "`concurrency` must be between 1 and 10000 runs, got 0"
        );
        assert_eq!(
            check("concurrency_key = \"customer_id\"").unwrap_err(),
            "this applies to a concurrency limit: add `concurrency = N` or remove it"
        );
        assert!(check("concurrency = 2, concurrency_strategy = \"fifo\"")
            .unwrap_err()
            .starts_with("\"fifo\" is not a concurrency strategy"));
        assert!(check("concurrency = 2, concurrency_key = \"a..b\"")
            .unwrap_err()
            .starts_with("\"a..b\" is not a key path"));
        assert!(check("\"name\" = 1")
            .unwrap_err()
            .starts_with("expected an argument such as"));
        assert_eq!(
            check("timeout = 30").unwrap_err(),
            "expected a string literal: a duration with a unit such as \"30s\""
        );
        assert_eq!(
            check("retries = \"3\"").unwrap_err(),
            "expected an integer literal for `retries`, such as `3`"
        );
        assert_eq!(
            check("priority = 2.5").unwrap_err(),
            "expected an integer literal for `priority`, such as `3`"
        );
        assert!(check("retries 3").unwrap_err().contains("expected `=`"));
        assert!(check("retries = 3 priority = 2")
            .unwrap_err()
            .contains("expected `,`"));
    }

    #[test]
    fn values_are_checked_with_the_core_validators() {
        assert_eq!(
            check("retries = -1").unwrap_err(),
            "retries must be between 0 and 100, got -1"
        );
        assert_eq!(
            check("retries = 1000").unwrap_err(),
            "retries must be between 0 and 100, got 1000"
        );
        assert!(check("priority = 11")
            .unwrap_err()
            .starts_with("priority must be between 1 and 10"));
        assert!(check("priority = 0")
            .unwrap_err()
            .starts_with("priority must be between 1 and 10"));
        assert!(check("timeout = \"30\"")
            .unwrap_err()
            .contains("missing unit"));
        assert_eq!(
            check("timeout = \"0s\"").unwrap_err(),
            "timeout must be greater than zero"
        );
        assert!(check("timeout = \"8d\"")
            .unwrap_err()
            .starts_with("timeout must be at most 7d"));
        assert!(check("cron = \"* * *\"")
            .unwrap_err()
            .starts_with("invalid cron expression"));
        assert!(check("cron = \"@daily\", timezone = \"Mars/Olympus\"")
            .unwrap_err()
            .starts_with("unknown time zone"));
        assert!(check("timezone = \"UTC\"")
            .unwrap_err()
            .starts_with("`timezone` only applies to a cron schedule"));
        assert!(check("every = \"0s\"")
            .unwrap_err()
            .starts_with("invalid interval \"@every 0s\""));
        assert_eq!(
            check("cron = \"@daily\", every = \"1h\"").unwrap_err(),
            "give either `cron` or `every`, not both"
        );
        assert!(check("overlap = \"skip\"")
            .unwrap_err()
            .starts_with("`overlap` only applies to a schedule"));
        assert!(check("every = \"1h\", catch_up = \"some\"")
            .unwrap_err()
            .starts_with("unknown catch-up policy \"some\""));
        assert!(check("every = \"1h\", overlap = \"queue\"")
            .unwrap_err()
            .starts_with("unknown overlap policy \"queue\""));
        assert!(check("name = \"a b\"")
            .unwrap_err()
            .contains("contains ' '"));
        assert!(check("backoff_factor = 0.5")
            .unwrap_err()
            .starts_with("backoff factor must be between 1 and 100"));
        assert!(check("backoff_factor = -2")
            .unwrap_err()
            .starts_with("backoff factor must be between 1 and 100"));
        assert!(check("backoff_factor = \"2\"")
            .unwrap_err()
            .starts_with("expected a number"));
        assert!(check("backoff_max = \"500ms\"")
            .unwrap_err()
            .starts_with("backoff maximum (500ms) is smaller"));
        assert!(check("backoff_initial = \"10m\"")
            .unwrap_err()
            .starts_with("backoff maximum (5m) is smaller"));
        // Independent errors are all reported.
        assert_eq!(
            check("retries = -1, priority = 0").unwrap_err(),
            "retries must be between 0 and 100, got -1 | priority must be between 1 and 10 (higher runs first), got 0"
        );
    }

    #[test]
    fn wrong_arguments_are_left_out_of_the_policies() {
        let args: TaskArgs = syn::parse_str("retries = -1, priority = 3").unwrap();
        let mut errors = Errors::default();
        let policies = args.check(&mut errors);
        assert!(errors.finish().is_err());
        assert_eq!(
            policies,
            Policies {
                priority: Some(3),
                ..Policies::default()
            }
        );
    }
}
