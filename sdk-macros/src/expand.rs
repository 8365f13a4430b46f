//! Code generation of `#[task]`: checks the function's shape, then emits the function unchanged,
//! its typed handle (a braced unit struct of the same name, implementing `owlclaw::Task`) and its
//! registration in the link-time registry.

use crate::attr::{Errors, Policies, TaskArgs};
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, ReturnType, Signature, Type};

/// Expands `#[task(args)] item` into the item, unchanged, followed by the generated items and the
/// errors.
///
/// The item is emitted even when there are errors (as tokio's `token_stream_with_error`), so that
/// the function stays known to the IDE and to the rest of the crate. When only an argument is
/// wrong, the handle is generated too, without that argument: the user sees the one error, not
/// also every use of the handle failing.
pub(crate) fn task(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let generated = expand(args, item.clone(), &mut errors);
    let mut tokens = item;
    match generated {
        Ok(generated) => tokens.extend(generated),
        Err(error) => errors.push(error),
    }
    if let Err(error) = errors.finish() {
        tokens.extend(error.into_compile_error());
    }
    tokens
}

/// The items generated for `#[task(args)] item`. An error that leaves nothing to generate (the
/// function's shape is wrong) is returned; one that doesn't (a wrong argument) is pushed to
/// `errors`.
fn expand(args: TokenStream, item: TokenStream, errors: &mut Errors) -> syn::Result<TokenStream> {
    let function: ItemFn = syn::parse2(item)
        .map_err(|e| syn::Error::new(e.span(), format!("#[task] applies to an `async fn`: {e}")))?;
    let (policies, parents) = match syn::parse2::<TaskArgs>(args) {
        Ok(args) => (
            args.check(errors),
            args.parents.map(|(_, p)| p).unwrap_or_default(),
        ),
        Err(error) => {
            errors.push(error);
            (Policies::default(), Vec::new())
        }
    };
    let name = match &policies.name {
        Some(name) => name.clone(),
        None => default_name(&function.sig.ident, errors),
    };
    let shape = Shape::of(&function.sig)?;
    Ok(generate(&function, &shape, &name, &policies, &parents))
}

/// The function's name, when it is a valid task name (it is unless it has non-ASCII letters).
fn default_name(ident: &syn::Ident, errors: &mut Errors) -> String {
    let name = ident.unraw().to_string();
    if let Err(e) = owlclaw_core::task::validate_task_name(&name) {
        errors.push(syn::Error::new_spanned(
            ident,
            format!("{e}; give the task a name with `#[task(name = \"...\")]`"),
        ));
    }
    name
}

/// What `#[task]` needs from the signature `async fn f(ctx: Context[, input: I]) -> R`.
#[derive(Debug)]
struct Shape<'a> {
    /// `I`, `None` for a task without input.
    input: Option<&'a Type>,
    /// `R`, some `Result<O, E>`.
    output: &'a Type,
}

const MUST_RETURN_RESULT: &str = "a #[task] function must return `Result<O, E>` (e.g. \
    `anyhow::Result<O>`): `O` is the run's result and an error fails the attempt";

const SHAPES: &str = "`async fn f(ctx: Context, input: I) -> Result<O, E>` or \
    `async fn f(ctx: Context) -> Result<O, E>`";

impl<'a> Shape<'a> {
    fn of(sig: &'a Signature) -> syn::Result<Shape<'a>> {
        let mut errors = Errors::default();
        if sig.asyncness.is_none() {
            errors.push(syn::Error::new_spanned(
                sig.fn_token,
                "the `async` keyword is missing: a #[task] function is an `async fn`",
            ));
        }
        if let Some(unsafety) = &sig.unsafety {
            errors.push(syn::Error::new_spanned(
                unsafety,
                "a #[task] function can't be `unsafe`",
            ));
        }
        if !sig.generics.params.is_empty() {
            errors.push(syn::Error::new_spanned(
                &sig.generics,
                "a #[task] function can't be generic: the worker calls it with one concrete input \
                 and output type",
            ));
        } else if let Some(where_clause) = &sig.generics.where_clause {
            errors.push(syn::Error::new_spanned(
                where_clause,
                "a #[task] function can't have a `where` clause: the worker calls it with one \
                 concrete input and output type",
            ));
        }
        if let Some(receiver) = sig.receiver() {
            errors.push(syn::Error::new_spanned(
                receiver,
                format!("a #[task] function can't take `self`: write a free function, {SHAPES}"),
            ));
        }
        let mut params = sig.inputs.iter().filter_map(|arg| match arg {
            FnArg::Typed(param) => Some(param),
            FnArg::Receiver(_) => None,
        });
        let (ctx, input) = (params.next(), params.next());
        let extra: Vec<_> = params.collect();
        if ctx.is_none() && sig.receiver().is_none() {
            errors.push(syn::Error::new_spanned(
                sig,
                format!("a #[task] function takes `ctx: Context` as its first parameter: {SHAPES}"),
            ));
        }
        if !extra.is_empty() {
            errors.push(syn::Error::new_spanned(
                quote!(#(#extra),*),
                "a #[task] function takes at most two parameters, `ctx: Context` and the input: \
                 put the values in one input struct",
            ));
        }
        let input = input.map(|param| &*param.ty);
        match input {
            Some(ty @ Type::Reference(_)) => errors.push(syn::Error::new_spanned(
                ty,
                "the input of a task is decoded from JSON and can't borrow: take an owned type \
                 (e.g. `String` instead of `&str`)",
            )),
            Some(ty @ Type::ImplTrait(_)) => errors.push(syn::Error::new_spanned(
                ty,
                "the input of a task must be a concrete type, not `impl Trait`",
            )),
            _ => {}
        }
        let output = match &sig.output {
            ReturnType::Type(_, ty) if matches!(**ty, Type::ImplTrait(_)) => {
                errors.push(syn::Error::new_spanned(
                    ty,
                    "a #[task] function must return a concrete `Result<O, E>`, not `impl Trait`",
                ));
                None
            }
            ReturnType::Type(_, ty) if !may_be_result(ty) => {
                errors.push(syn::Error::new_spanned(ty, MUST_RETURN_RESULT));
                None
            }
            ReturnType::Type(_, ty) => Some(&**ty),
            ReturnType::Default => {
                errors.push(syn::Error::new_spanned(sig, MUST_RETURN_RESULT));
                None
            }
        };
        errors.finish()?;
        let output = output.expect("checked above");
        Ok(Shape { input, output })
    }
}

/// False for a return type that is surely not a `Result`: a tuple such as `()`, a reference, or a
/// well-known type such as `String` or `Option<T>`. Any other path may be an alias of `Result`
/// (`anyhow::Result<O>`, `MyResult<O>`); the compiler checks it through the `TaskReturn` trait.
fn may_be_result(ty: &Type) -> bool {
    const NOT_RESULTS: &[&str] = &[
        "bool", "char", "str", "String", "Option", "Vec", "Box", "u8", "u16", "u32", "u64", "u128",
        "usize", "i8", "i16", "i32", "i64", "i128", "isize", "f32", "f64",
    ];
    match ty {
        Type::Path(path) if path.qself.is_none() => match path.path.segments.last() {
            Some(last) => !NOT_RESULTS.iter().any(|name| last.ident == name),
            None => true,
        },
        Type::Paren(paren) => may_be_result(&paren.elem),
        Type::Group(group) => may_be_result(&group.elem),
        Type::Path(_) | Type::Macro(_) | Type::Verbatim(_) => true,
        _ => false,
    }
}

/// The typed handle, its `Task` impl and the registration.
fn generate(
    function: &ItemFn,
    shape: &Shape<'_>,
    name: &str,
    policies: &Policies,
    parents: &[syn::Path],
) -> TokenStream {
    let vis = &function.vis;
    let ident = &function.sig.ident;
    let output = shape.output;
    let output_span = output.span();
    let spec = spec(name, policies, parents);

    // Local variables are named at the mixed site, as in `macro_rules!`: the user's tokens
    // interpolated next to them can't see them. (A constant of the user's crate named like one of
    // them, against the naming conventions, would still be taken for a pattern, as with
    // `macro_rules!`; the names are kept readable because rustdoc shows them.)
    let local = |name: &str| syn::Ident::new(name, Span::mixed_site());
    let (ctx, input, scheduler, delay, at, tx) = (
        local("ctx"),
        local("input"),
        local("scheduler"),
        local("delay"),
        local("at"),
        local("tx"),
    );

    // The user's tokens keep their spans; the calls that check a bound on a user's type are
    // spanned at that type, so that an input that isn't `Serialize + DeserializeOwned` or a return
    // type that isn't a `Result` is reported there, not on the attribute.
    let (input_ty, input_param, input_arg, decode, call_args) = match shape.input {
        Some(ty) => {
            let decode_input = quote_spanned! {ty.span()=>
                ::owlclaw::__private::decode_input::<#ty>(#name, #input)
            };
            (
                quote!(#ty),
                quote!(#input: #ty,),
                quote!(#input),
                quote!(let #input: #ty = #decode_input?;),
                quote!(#ctx, #input),
            )
        }
        None => (
            quote!(()),
            TokenStream::new(),
            quote!(()),
            quote!(let _ = #input;),
            quote!(#ctx),
        ),
    };
    let example_args = if shape.input.is_some() {
        "&client, input"
    } else {
        "&client"
    };

    let struct_doc = format!(
        "Typed handle of the `{name}` task, generated by `#[task]`: schedule it with \
         `{ident}::enqueue({example_args})`.",
        ident = ident.unraw(),
    );
    let name_doc = "The task's name.";
    let enqueue_doc = "Schedules a run now; await the builder to get the run's handle, or chain \
                       `.priority(..)`, `.idempotency_key(..)`, `.owner(..)`, `.delay(..)` or \
                       `.at(..)` first.";
    let schedule_doc = "Schedules a run after `delay`; await the builder to get the run's handle.";
    let delay_doc = "Celery's `delay`: schedules a run now (as `enqueue`); await the builder to \
                     get the run's handle.";
    let apply_async_doc = "Celery's `apply_async`: a run to schedule with options, chained \
                           before `.await`: `.countdown(d)`, `.eta(t)`, `.expires(d or t)`, \
                           `.priority(n)`, `.retries(n)`.";
    let schedule_at_doc = "Schedules a run at `at`; await the builder to get the run's handle.";
    let run_doc = "Schedules a run now and waits for its output.";
    let enqueue_in_doc = "Schedules a run now inside the application's own sqlx transaction `tx` \
                          on the lite-mode engine's database: the run exists if and only if the \
                          transaction commits, and workers are woken once it has.";
    let invoke = format_ident!("__owlclaw_invoke");

    let output_projection =
        quote_spanned!(output_span=> <#output as ::owlclaw::__private::TaskReturn>::Output);
    // Spanned at the return type, so that one that isn't a `Result` with a `Display` error is
    // reported there.
    let encode = quote_spanned! {output_span=>
        ::owlclaw::__private::encode_result::<#output>(#ident(#call_args).await)
    };

    // Spanned at the function's name, so that a future that isn't `Send` is reported there.
    let invoke_body = quote_spanned! {ident.span()=>
        ::std::boxed::Box::pin(async move {
            #decode
            #encode
        })
    };

    // Spanned at the return type, as `run`.
    let enqueue_in = quote_spanned! {output_span=>
        #[doc = #enqueue_in_doc]
        #vis async fn enqueue_in(
            #scheduler: &::owlclaw::Client,
            #tx: &mut impl ::owlclaw::AppTransaction,
            #input_param
        ) -> ::owlclaw::Result<::owlclaw::RunHandle<<Self as ::owlclaw::Task>::Output>> {
            ::owlclaw::ScheduleBuilder::<Self>::new(#scheduler, #input_arg)
                .in_transaction(#tx)
                .await
        }
    };

    // Spanned at the return type: its `Output` is where a return type that isn't a `Result` is
    // reported.
    let run = quote_spanned! {output_span=>
        #[doc = #run_doc]
        #vis async fn run(
            #scheduler: &impl ::owlclaw::Scheduler,
            #input_param
        ) -> ::owlclaw::Result<<Self as ::owlclaw::Task>::Output> {
            ::owlclaw::ScheduleBuilder::<Self>::new(#scheduler, #input_arg).wait().await
        }
    };

    quote! {
        #[doc = #struct_doc]
        #[allow(non_camel_case_types, dead_code)]
        #[derive(
            ::core::fmt::Debug,
            ::core::clone::Clone,
            ::core::marker::Copy,
            ::core::default::Default,
        )]
        #vis struct #ident {}

        impl ::owlclaw::Task for #ident {
            type Input = #input_ty;
            type Output = #output_projection;
            const SPEC: ::owlclaw::TaskSpec = #spec;
        }

        #[allow(dead_code)]
        impl #ident {
            #[doc = #name_doc]
            #vis const NAME: &'static str = #name;

            #[doc = #enqueue_doc]
            #vis fn enqueue(
                #scheduler: &impl ::owlclaw::Scheduler,
                #input_param
            ) -> ::owlclaw::ScheduleBuilder<Self> {
                ::owlclaw::ScheduleBuilder::<Self>::new(#scheduler, #input_arg)
            }

            #enqueue_in

            #[doc = #delay_doc]
            #vis fn delay(
                #scheduler: &impl ::owlclaw::Scheduler,
                #input_param
            ) -> ::owlclaw::ScheduleBuilder<Self> {
                ::owlclaw::ScheduleBuilder::<Self>::new(#scheduler, #input_arg)
            }

            #[doc = #apply_async_doc]
            #vis fn apply_async(
                #scheduler: &impl ::owlclaw::Scheduler,
                #input_param
            ) -> ::owlclaw::ScheduleBuilder<Self> {
                ::owlclaw::ScheduleBuilder::<Self>::new(#scheduler, #input_arg)
            }

            #[doc = #schedule_doc]
            #vis fn schedule(
                #scheduler: &impl ::owlclaw::Scheduler,
                #input_param
                #delay: ::core::time::Duration,
            ) -> ::owlclaw::ScheduleBuilder<Self> {
                ::owlclaw::ScheduleBuilder::<Self>::new(#scheduler, #input_arg).delay(#delay)
            }

            #[doc = #schedule_at_doc]
            #vis fn schedule_at(
                #scheduler: &impl ::owlclaw::Scheduler,
                #input_param
                #at: ::owlclaw::DateTime<::owlclaw::Utc>,
            ) -> ::owlclaw::ScheduleBuilder<Self> {
                ::owlclaw::ScheduleBuilder::<Self>::new(#scheduler, #input_arg).at(#at)
            }

            #run
        }

        const _: () = {
            fn #invoke(
                #ctx: ::owlclaw::Context,
                #input: ::owlclaw::__private::Value,
            ) -> ::owlclaw::__private::BoxFuture<
                ::core::result::Result<
                    ::owlclaw::__private::Value,
                    ::owlclaw::__private::TaskFailure,
                >,
            > {
                #invoke_body
            }

            ::owlclaw::__private::inventory::submit! {
                ::owlclaw::__private::TaskRegistration::new(
                    <#ident as ::owlclaw::Task>::SPEC,
                    #invoke,
                )
            }
        };
    }
}

/// The `TaskSpec` literal: the given policies, the rest from `TaskSpec::DEFAULT`.
fn spec(name: &str, policies: &Policies, parents: &[syn::Path]) -> TokenStream {
    let some = |value: &Option<String>| {
        value
            .as_ref()
            .map(|value| quote!(::core::option::Option::Some(#value)))
    };
    let fields = [
        ("retries", policies.retries.map(|v| quote!(#v))),
        ("timeout_ms", policies.timeout_ms.map(|v| quote!(#v))),
        ("priority", policies.priority.map(|v| quote!(#v))),
        (
            "backoff_initial_ms",
            policies.backoff_initial_ms.map(|v| quote!(#v)),
        ),
        (
            "backoff_factor",
            policies.backoff_factor.map(|v| quote!(#v)),
        ),
        (
            "backoff_max_ms",
            policies.backoff_max_ms.map(|v| quote!(#v)),
        ),
        ("cron", some(&policies.cron)),
        ("timezone", some(&policies.timezone)),
        ("overlap", some(&policies.overlap)),
        ("catch_up", some(&policies.catch_up)),
        ("on_event", some(&policies.on_event)),
        ("concurrency", policies.concurrency.map(|v| quote!(#v))),
        ("concurrency_key", some(&policies.concurrency_key)),
        (
            "concurrency_strategy",
            policies.concurrency_strategy.as_ref().map(|v| quote!(#v)),
        ),
        ("rate_limit", some(&policies.rate_limit)),
        (
            "rate_limit_units",
            policies.rate_limit_units.map(|v| quote!(#v)),
        ),
        ("rate_limit_key", some(&policies.rate_limit_key)),
        ("expires_ms", policies.expires_ms.map(|v| quote!(#v))),
        (
            "requires",
            policies
                .requires
                .as_ref()
                .map(|requires| quote!(&[#(#requires),*])),
        ),
    ]
    .into_iter()
    .chain([(
        "parents",
        // Each parent is a `#[task]` handle: an unknown one is a compile error there.
        (!parents.is_empty()).then(|| quote!(&[#(#parents::NAME),*])),
    )])
    .filter_map(|(field, value)| {
        let field = syn::Ident::new(field, Span::call_site());
        value.map(|value| quote!(#field: #value,))
    });
    quote! {
        ::owlclaw::TaskSpec {
            name: #name,
            #(#fields)*
            ..::owlclaw::TaskSpec::DEFAULT
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generated items, or every error as text.
    fn expand_str(args: &str, item: &str) -> Result<syn::File, Vec<String>> {
        let mut errors = Errors::default();
        let generated = expand(args.parse().unwrap(), item.parse().unwrap(), &mut errors);
        let generated = generated.map_err(|e| errors.push(e));
        match errors.finish() {
            Ok(()) => Ok(syn::parse2(generated.unwrap()).expect("the generated code parses")),
            Err(e) => Err(e.into_iter().map(|e| e.to_string()).collect()),
        }
    }

    fn expand_err(args: &str, item: &str) -> String {
        expand_str(args, item).expect_err("an error").join(" | ")
    }

    fn text(tokens: impl quote::ToTokens) -> String {
        tokens.to_token_stream().to_string()
    }

    #[test]
    fn generates_the_handle_the_task_impl_and_the_registration() {
        let file = expand_str(
            r#"name = "send-email", retries = 3, timeout = "30s", priority = 7"#,
            "pub async fn send_email(ctx: Context, input: Email) -> anyhow::Result<String> { todo!() }",
        )
        .unwrap();
        let [syn::Item::Struct(handle), syn::Item::Impl(task), syn::Item::Impl(methods), syn::Item::Const(register)] =
            &file.items[..]
        else {
            panic!("unexpected items: {}", text(&file));
        };
        assert_eq!(text(&handle.vis), "pub");
        assert_eq!(text(&handle.ident), "send_email");
        assert!(matches!(handle.fields, syn::Fields::Named(ref f) if f.named.is_empty()));
        let task = text(task);
        assert!(
            task.starts_with("impl :: owlclaw :: Task for send_email"),
            "{task}"
        );
        assert!(task.contains("type Input = Email ;"), "{task}");
        assert!(
            task.contains(
                "type Output = < anyhow :: Result < String > as :: owlclaw :: __private :: TaskReturn > :: Output ;"
            ),
            "{task}"
        );
        assert!(
            task.contains(
                "name : \"send-email\" , retries : 3u32 , timeout_ms : 30000u64 , priority : 7u8 , .. :: owlclaw :: TaskSpec :: DEFAULT"
            ),
            "{task}"
        );
        let methods = text(methods);
        for method in [
            "pub const NAME : & 'static str = \"send-email\"",
            "pub fn enqueue (scheduler : & impl :: owlclaw :: Scheduler , input : Email ,)",
            "pub fn schedule (scheduler : & impl :: owlclaw :: Scheduler , input : Email , delay : :: core :: time :: Duration ,)",
            "pub fn schedule_at (scheduler : & impl :: owlclaw :: Scheduler , input : Email , at : :: owlclaw :: DateTime < :: owlclaw :: Utc > ,)",
            "pub async fn run (scheduler : & impl :: owlclaw :: Scheduler , input : Email ,)",
        ] {
            assert!(methods.contains(method), "{method} in {methods}");
        }
        let register = text(register);
        assert!(register.contains("let input : Email = :: owlclaw :: __private :: decode_input :: < Email > (\"send-email\" , input) ? ;"), "{register}");
        assert!(
            register.contains(
                "encode_result :: < anyhow :: Result < String > > (send_email (ctx , input) . await)"
            ),
            "{register}"
        );
        assert!(
            register.contains(":: owlclaw :: __private :: inventory :: submit !"),
            "{register}"
        );
    }

    #[test]
    fn a_task_without_input_takes_unit() {
        let file = expand_str(
            r#"cron = "@hourly", timezone = "Europe/Paris", backoff_factor = 3, backoff_max = "1h""#,
            "async fn r#cleanup(_ctx: owlclaw::Context) -> Result<(), MyError> { Ok(()) }",
        )
        .unwrap();
        let all = text(&file);
        assert!(all.contains("struct r#cleanup { }"), "{all}");
        assert!(all.contains("type Input = () ;"), "{all}");
        assert!(all.contains("name : \"cleanup\""), "{all}");
        assert!(all.contains("backoff_factor : 3f64 , backoff_max_ms : 3600000u64 , cron : :: core :: option :: Option :: Some (\"@hourly\") , timezone : :: core :: option :: Option :: Some (\"Europe/Paris\") ,"), "{all}");
        assert!(all.contains("fn enqueue (scheduler : & impl :: owlclaw :: Scheduler ,) -> :: owlclaw :: ScheduleBuilder < Self > { :: owlclaw :: ScheduleBuilder :: < Self > :: new (scheduler , ()) }"), "{all}");
        assert!(all.contains("let _ = input ; :: owlclaw :: __private :: encode_result :: < Result < () , MyError > > (r#cleanup (ctx) . await)"), "{all}");
    }

    #[test]
    fn the_shape_of_the_function_is_checked() {
        let err = |item: &str| expand_err("", item);
        assert!(err("fn f(ctx: Context) -> Result<(), E> {}")
            .starts_with("the `async` keyword is missing"));
        assert!(err("async unsafe fn f(ctx: Context) -> Result<(), E> {}")
            .contains("can't be `unsafe`"));
        assert!(err("async fn f<T>(ctx: Context, i: T) -> Result<(), E> {}")
            .contains("can't be generic"));
        assert!(
            err("async fn f<const N: usize>(ctx: Context) -> Result<(), E> {}")
                .contains("can't be generic")
        );
        assert!(
            err("async fn f(ctx: Context) -> Result<(), E> where (): Copy {}")
                .contains("`where` clause")
        );
        assert!(err("async fn f(&self, ctx: Context) -> Result<(), E> {}")
            .contains("can't take `self`"));
        assert!(err("async fn f() -> Result<(), E> {}")
            .contains("takes `ctx: Context` as its first parameter"));
        assert!(
            err("async fn f(ctx: Context, a: A, b: B) -> Result<(), E> {}")
                .contains("at most two parameters")
        );
        assert!(
            err("async fn f(ctx: Context, a: &str) -> Result<(), E> {}").contains("can't borrow")
        );
        assert!(
            err("async fn f(ctx: Context, a: impl Tr) -> Result<(), E> {}")
                .contains("not `impl Trait`")
        );
        assert!(err("async fn f(ctx: Context) {}").contains("must return `Result<O, E>`"));
        assert!(err("async fn f(ctx: Context) -> impl Tr {}").contains("not `impl Trait`"));
        for not_result in [
            "()",
            "String",
            "Option<u32>",
            "&'static str",
            "std::string::String",
            "(u8)",
        ] {
            let item = format!("async fn f(ctx: Context) -> {not_result} {{}}");
            assert!(
                err(&item).contains("must return `Result<O, E>`"),
                "{not_result}"
            );
        }
        for may_be_result in [
            "anyhow::Result<()>",
            "MyResult<u8>",
            "Receipt",
            "<T as Tr>::Out",
        ] {
            let item = format!("async fn f(ctx: Context) -> {may_be_result} {{}}");
            assert!(expand_str("", &item).is_ok(), "{may_be_result}");
        }
        assert!(err("struct S;").starts_with("#[task] applies to an `async fn`"));
        assert!(
            err("async fn café(ctx: Context) -> Result<(), E> {}").contains("give the task a name")
        );
        // Every independent error is reported.
        assert_eq!(
            expand_err("priority = 0", "fn f() {}")
                .matches(" | ")
                .count(),
            3,
            "priority, async, parameters, return type"
        );
    }

    #[test]
    fn the_handle_is_generated_even_when_an_argument_is_wrong() {
        let mut errors = Errors::default();
        let generated = expand(
            "priority = 11, retries = 2".parse().unwrap(),
            "async fn f(ctx: Context) -> Result<(), E> { Ok(()) }"
                .parse()
                .unwrap(),
            &mut errors,
        )
        .unwrap();
        assert_eq!(
            errors.finish().unwrap_err().to_string(),
            "priority must be between 1 and 10 (higher runs first), got 11"
        );
        let generated = generated.to_string();
        assert!(
            generated
                .contains("name : \"f\" , retries : 2u32 , .. :: owlclaw :: TaskSpec :: DEFAULT"),
            "{generated}"
        );
    }

    #[test]
    fn the_function_is_emitted_unchanged_with_the_errors() {
        let item = "fn f(ctx: Context) -> Result<(), E> { let x = 1; Ok(()) }";
        let out = task("retries = -1".parse().unwrap(), item.parse().unwrap()).to_string();
        let item = item.parse::<TokenStream>().unwrap().to_string();
        assert!(out.starts_with(&item), "{out}");
        assert_eq!(out.matches("compile_error").count(), 2, "{out}");
        assert!(!out.contains("struct"), "{out}");
    }
}
