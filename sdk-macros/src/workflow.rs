//! `#[workflow(...)]` on a unit struct: a DAG of `#[task]`s (each task's `parents` say the
//! edges). Generates the struct's `owlclaw::Task` impl (so that typed handles schedule and await
//! it: its input is its tasks' input, its output its output task's), `enqueue`/`run`, and its
//! registration. Which tasks exist and their input types are checked by the compiler; the shape
//! (cycles, parents outside the workflow) when the worker registers it.

use crate::attr::Errors;
use owlclaw_core::cron::{parse_timezone, CronExpr};
use owlclaw_core::task::{validate_event_key, validate_priority, validate_task_name};
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, Ident, ItemStruct, Lit, LitStr, Path, Token};

const VALID: &str = "name, tasks, output, on_failure, cron, timezone, on_event, priority";

/// The arguments as written.
#[derive(Default)]
struct WorkflowArgs {
    name: Option<LitStr>,
    tasks: Option<(Ident, Vec<Path>)>,
    output: Option<Path>,
    on_failure: Option<Path>,
    cron: Option<LitStr>,
    timezone: Option<(Ident, LitStr)>,
    on_event: Option<LitStr>,
    priority: Option<Expr>,
}

impl Parse for WorkflowArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = WorkflowArgs::default();
        while !input.is_empty() {
            let key: Ident = input.parse()?;
            input.parse::<Token![=]>()?;
            let twice = || syn::Error::new_spanned(&key, format!("`{key}` is given twice"));
            match key.to_string().as_str() {
                "name" if args.name.is_some() => return Err(twice()),
                "name" => args.name = Some(input.parse()?),
                "tasks" if args.tasks.is_some() => return Err(twice()),
                "tasks" => {
                    let content;
                    syn::bracketed!(content in input);
                    let list = Punctuated::<Path, Token![,]>::parse_terminated(&content)?;
                    args.tasks = Some((key.clone(), list.into_iter().collect()));
                }
                "output" if args.output.is_some() => return Err(twice()),
                "output" => args.output = Some(input.parse()?),
                "on_failure" if args.on_failure.is_some() => return Err(twice()),
                "on_failure" => args.on_failure = Some(input.parse()?),
                "cron" if args.cron.is_some() => return Err(twice()),
                "cron" => args.cron = Some(input.parse()?),
                "timezone" if args.timezone.is_some() => return Err(twice()),
                "timezone" => args.timezone = Some((key.clone(), input.parse()?)),
                "on_event" if args.on_event.is_some() => return Err(twice()),
                "on_event" => args.on_event = Some(input.parse()?),
                "priority" if args.priority.is_some() => return Err(twice()),
                "priority" => args.priority = Some(input.parse()?),
                other => {
                    return Err(syn::Error::new_spanned(
                        &key,
                        format!("unknown argument `{other}`; valid arguments: {VALID}"),
                    ))
                }
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok(args)
    }
}

/// Expands `#[workflow(args)] item`.
pub(crate) fn workflow(args: TokenStream, item: TokenStream) -> TokenStream {
    match expand(args, item.clone()) {
        Ok(tokens) => tokens,
        Err(e) => {
            // The struct stays, lower-case name allowed as on success: the user sees the one
            // error, not also a naming lint.
            let mut tokens = match syn::parse2::<ItemStruct>(item.clone()) {
                Ok(mut s) => {
                    s.attrs
                        .push(syn::parse_quote!(#[allow(non_camel_case_types, dead_code)]));
                    quote!(#s)
                }
                Err(_) => item,
            };
            tokens.extend(e.into_compile_error());
            tokens
        }
    }
}

fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let item: ItemStruct = syn::parse2(item).map_err(|e| {
        syn::Error::new(
            e.span(),
            "#[workflow] applies to a unit struct: `#[workflow(tasks = [a, b])] pub struct publish;`",
        )
    })?;
    if !item.fields.is_empty() || !item.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &item,
            "#[workflow] applies to a unit struct without fields or generics",
        ));
    }
    let args: WorkflowArgs = syn::parse2(args)?;
    let mut errors = Errors::default();
    let ident = &item.ident;
    let name = match &args.name {
        Some(lit) => {
            errors
                .ok(validate_task_name(&lit.value()).map_err(|e| syn::Error::new_spanned(lit, e)));
            lit.value()
        }
        None => {
            let n = ident.to_string();
            errors.ok(validate_task_name(&n).map_err(|e| {
                syn::Error::new_spanned(ident, format!("{e}; give it a name with `name = \"...\"`"))
            }));
            n
        }
    };
    let Some((tasks_key, tasks)) = &args.tasks else {
        return Err(syn::Error::new(
            Span::call_site(),
            "a workflow lists its tasks: `tasks = [validate, map, save]`",
        ));
    };
    if tasks.is_empty() {
        return Err(syn::Error::new_spanned(
            tasks_key,
            "a workflow has at least one task",
        ));
    }
    for (i, t) in tasks.iter().enumerate() {
        if tasks[..i].iter().any(|u| u == t) {
            errors.push(syn::Error::new_spanned(
                t,
                format!("`{}` is listed twice in `tasks`", quote!(#t)),
            ));
        }
    }
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| tasks[tasks.len() - 1].clone());
    if !tasks.contains(&output) {
        errors.push(syn::Error::new_spanned(
            &output,
            "the output is one of the workflow's `tasks`",
        ));
    }
    if let Some(f) = &args.on_failure {
        if tasks.contains(f) {
            errors.push(syn::Error::new_spanned(
                f,
                "the on-failure task is not one of the workflow's `tasks`",
            ));
        }
    }
    if let Some(lit) = &args.cron {
        errors.ok(CronExpr::parse(&lit.value()).map_err(|e| syn::Error::new_spanned(lit, e)));
    }
    if let Some((key, lit)) = &args.timezone {
        if args.cron.is_none() {
            errors.push(syn::Error::new_spanned(
                key,
                "`timezone` only applies to a cron schedule: add `cron = \"...\"` or remove it",
            ));
        }
        errors.ok(parse_timezone(&lit.value()).map_err(|e| syn::Error::new_spanned(lit, e)));
    }
    if let Some(lit) = &args.on_event {
        errors.ok(validate_event_key(&lit.value()).map_err(|e| syn::Error::new_spanned(lit, e)));
    }
    let priority = match &args.priority {
        Some(Expr::Lit(l)) => match &l.lit {
            Lit::Int(i) => {
                let n: i128 = i.base10_parse()?;
                errors.ok(validate_priority(n).map_err(|e| syn::Error::new_spanned(i, e)));
                Some(n as u8)
            }
            other => {
                errors.push(syn::Error::new_spanned(
                    other,
                    "`priority` is an integer from 1 to 10",
                ));
                None
            }
        },
        Some(other) => {
            errors.push(syn::Error::new_spanned(
                other,
                "`priority` is an integer from 1 to 10",
            ));
            None
        }
        None => None,
    };
    errors.finish()?;

    let vis = &item.vis;
    let first = &tasks[0];
    let some = |v: Option<String>| match v {
        Some(v) => quote!(::core::option::Option::Some(#v)),
        None => quote!(::core::option::Option::None),
    };
    let cron = some(args.cron.as_ref().map(LitStr::value));
    let timezone = some(args.timezone.as_ref().map(|(_, l)| l.value()));
    let on_event = some(args.on_event.as_ref().map(LitStr::value));
    let priority = priority.map(|p| quote!(priority: #p,));
    let on_failure = match &args.on_failure {
        Some(f) => quote!(::core::option::Option::Some(#f::NAME)),
        None => quote!(::core::option::Option::None),
    };
    // Every task takes the workflow's input: a mismatch is a type error at that task.
    let input_checks = tasks.iter().enumerate().map(|(i, t)| {
        let check = format_ident!("__owlclaw_input_of_task_{}", i);
        quote_spanned! {t.span()=>
            #[allow(dead_code)]
            fn #check(input: <#ident as ::owlclaw::Task>::Input) -> <#t as ::owlclaw::Task>::Input {
                input
            }
        }
    });
    let failure_check = args.on_failure.as_ref().map(|f| {
        quote_spanned! {f.span()=>
            #[allow(dead_code)]
            fn __owlclaw_input_of_on_failure(input: ::owlclaw::WorkflowFailure) -> <#f as ::owlclaw::Task>::Input {
                input
            }
        }
    });
    let doc = format!(
        "Typed handle of the `{name}` workflow, generated by `#[workflow]`: `{ident}::run(&client, input)`."
    );
    let mut item = item.clone();
    item.attrs
        .push(syn::parse_quote!(#[allow(non_camel_case_types)]));
    item.attrs.push(syn::parse_quote!(#[derive(::core::fmt::Debug, ::core::clone::Clone, ::core::marker::Copy, ::core::default::Default)]));
    item.attrs.push(syn::parse_quote!(#[doc = #doc]));
    Ok(quote! {
        #item

        impl ::owlclaw::Task for #ident {
            type Input = <#first as ::owlclaw::Task>::Input;
            type Output = <#output as ::owlclaw::Task>::Output;
            const SPEC: ::owlclaw::TaskSpec = ::owlclaw::TaskSpec {
                name: #name,
                cron: #cron,
                timezone: #timezone,
                on_event: #on_event,
                #priority
                workflow: true,
                ..::owlclaw::TaskSpec::DEFAULT
            };
        }

        #[allow(dead_code)]
        impl #ident {
            /// The workflow's name.
            #vis const NAME: &'static str = #name;

            /// Starts a run of the workflow now; await the builder for the run's handle.
            #vis fn enqueue(
                scheduler: &impl ::owlclaw::Scheduler,
                input: <Self as ::owlclaw::Task>::Input,
            ) -> ::owlclaw::ScheduleBuilder<Self> {
                ::owlclaw::ScheduleBuilder::<Self>::new(scheduler, input)
            }

            /// Runs the workflow and waits for its output (its output task's).
            #vis async fn run(
                scheduler: &impl ::owlclaw::Scheduler,
                input: <Self as ::owlclaw::Task>::Input,
            ) -> ::owlclaw::Result<<Self as ::owlclaw::Task>::Output> {
                ::owlclaw::ScheduleBuilder::<Self>::new(scheduler, input).wait().await
            }
        }

        const _: () = {
            #(#input_checks)*
            #failure_check
            ::owlclaw::__private::inventory::submit! {
                ::owlclaw::__private::WorkflowRegistration {
                    spec: <#ident as ::owlclaw::Task>::SPEC,
                    tasks: &[#(#tasks::NAME),*],
                    output: #output::NAME,
                    on_failure: #on_failure,
                }
            }
        };
    })
}
