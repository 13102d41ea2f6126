//! `#[batch_app]` and `#[stream_app]`: turn one tenant function into a mysimbdp component.
//!
//! The attribute keeps the function as written and adds a module that generates the export
//! bindings for the chosen world (the imports are the SDK's own bindings, shared through
//! `with`), so the app crate needs no `wit-bindgen` of its own.

use proc_macro::TokenStream;
use quote::{format_ident, quote};
use syn::{FnArg, ItemFn, ReturnType, Type, parse_macro_input, spanned::Spanned};

/// The WIT package, found next to this crate at compile time.
const WIT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../wit");

/// Marks `fn(input: &mut Input, out: &mut Output) -> Result<Quality, AppError>` as the
/// entry point of a batch app (world `mysimbdp:ingest/batch-app`).
#[proc_macro_attribute]
pub fn batch_app(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(attr, item, Kind::Batch)
}

/// Marks `fn(message: &Message, out: &mut Output) -> Result<(), AppError>` as the entry
/// point of a stream app (world `mysimbdp:ingest/stream-app`); it runs once per message.
#[proc_macro_attribute]
pub fn stream_app(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(attr, item, Kind::Stream)
}

#[derive(Clone, Copy)]
enum Kind {
    Batch,
    Stream,
}

impl Kind {
    fn attribute(self) -> &'static str {
        match self {
            Kind::Batch => "#[batch_app]",
            Kind::Stream => "#[stream_app]",
        }
    }

    fn signature(self) -> &'static str {
        match self {
            Kind::Batch => "fn(input: &mut Input, out: &mut Output) -> Result<Quality, AppError>",
            Kind::Stream => "fn(message: &Message, out: &mut Output) -> Result<(), AppError>",
        }
    }

    /// The expected (reference mutability, type name) of each argument.
    fn arguments(self) -> [(bool, &'static str); 2] {
        match self {
            Kind::Batch => [(true, "Input"), (true, "Output")],
            Kind::Stream => [(false, "Message"), (true, "Output")],
        }
    }
}

fn expand(attr: TokenStream, item: TokenStream, kind: Kind) -> TokenStream {
    let attr = proc_macro2::TokenStream::from(attr);
    if !attr.is_empty() {
        return syn::Error::new(
            attr.span(),
            format!("{} takes no arguments", kind.attribute()),
        )
        .to_compile_error()
        .into();
    }
    let function = parse_macro_input!(item as ItemFn);
    if let Err(error) = check_signature(&function, kind) {
        return error.to_compile_error().into();
    }
    let name = &function.sig.ident;
    let module = format_ident!("__mysimbdp_{}_app", name);
    let glue = match kind {
        Kind::Batch => quote! {
            ::mysimbdp_sdk::__private::wit_bindgen::generate!({
                runtime_path: "::mysimbdp_sdk::__private::wit_bindgen::rt",
                path: #WIT_DIR,
                world: "mysimbdp:ingest/batch-app",
                with: {
                    "mysimbdp:ingest/types@0.2.0": ::mysimbdp_sdk::__private::bindings::mysimbdp::ingest::types,
                    "mysimbdp:ingest/log@0.2.0": ::mysimbdp_sdk::__private::bindings::mysimbdp::ingest::log,
                    "mysimbdp:ingest/params@0.2.0": ::mysimbdp_sdk::__private::bindings::mysimbdp::ingest::params,
                    "mysimbdp:ingest/batch-input@0.2.0": ::mysimbdp_sdk::__private::bindings::mysimbdp::ingest::batch_input,
                    "mysimbdp:ingest/batch-output@0.2.0": ::mysimbdp_sdk::__private::bindings::mysimbdp::ingest::batch_output,
                },
            });

            struct App;

            impl exports::mysimbdp::ingest::batch_ingest::Guest for App {
                fn ingest(
                    input: &::mysimbdp_sdk::__private::bindings::mysimbdp::ingest::batch_input::Source,
                ) -> ::core::result::Result<
                    ::mysimbdp_sdk::__private::bindings::mysimbdp::ingest::types::Quality,
                    ::mysimbdp_sdk::__private::bindings::mysimbdp::ingest::types::AppError,
                > {
                    ::mysimbdp_sdk::__private::run_batch(input, super::#name)
                }
            }
        },
        Kind::Stream => quote! {
            ::mysimbdp_sdk::__private::wit_bindgen::generate!({
                runtime_path: "::mysimbdp_sdk::__private::wit_bindgen::rt",
                path: #WIT_DIR,
                world: "mysimbdp:ingest/stream-app",
                with: {
                    "mysimbdp:ingest/types@0.2.0": ::mysimbdp_sdk::__private::bindings::mysimbdp::ingest::types,
                    "mysimbdp:ingest/log@0.2.0": ::mysimbdp_sdk::__private::bindings::mysimbdp::ingest::log,
                    "mysimbdp:ingest/params@0.2.0": ::mysimbdp_sdk::__private::bindings::mysimbdp::ingest::params,
                },
            });

            struct App;

            impl exports::mysimbdp::ingest::stream_ingest::Guest for App {
                fn process(
                    messages: ::std::vec::Vec<exports::mysimbdp::ingest::stream_ingest::Message>,
                ) -> ::std::vec::Vec<exports::mysimbdp::ingest::stream_ingest::Outcome> {
                    messages
                        .into_iter()
                        .map(|m| {
                            ::mysimbdp_sdk::__private::run_message(
                                ::mysimbdp_sdk::Message {
                                    id: m.id,
                                    payload: m.payload,
                                    content_type: m.content_type,
                                    headers: m.headers,
                                    attempt: m.attempt,
                                },
                                super::#name,
                            )
                        })
                        .collect()
                }
            }
        },
    };
    quote! {
        #function

        #[doc(hidden)]
        #[allow(missing_docs, unsafe_code, clippy::all)]
        mod #module {
            #glue
            export!(App);
        }
    }
    .into()
}

/// Refuses anything but the documented signature, pointing at the offending part.
fn check_signature(function: &ItemFn, kind: Kind) -> syn::Result<()> {
    let sig = &function.sig;
    let expected = kind.signature();
    let wrong = |span: proc_macro2::Span, what: &str| {
        syn::Error::new(
            span,
            format!("{} {what}; expected `{expected}`", kind.attribute()),
        )
    };
    if let Some(asyncness) = &sig.asyncness {
        return Err(wrong(asyncness.span(), "cannot be async"));
    }
    if !sig.generics.params.is_empty() {
        return Err(wrong(sig.generics.span(), "cannot be generic"));
    }
    if sig.inputs.len() != 2 {
        return Err(wrong(sig.inputs.span(), "takes exactly two arguments"));
    }
    for (arg, (mutable, type_name)) in sig.inputs.iter().zip(kind.arguments()) {
        let FnArg::Typed(typed) = arg else {
            return Err(wrong(arg.span(), "must be a free function, not a method"));
        };
        let ok = match &*typed.ty {
            Type::Reference(reference) => {
                reference.mutability.is_some() == mutable
                    && last_segment(&reference.elem).as_deref() == Some(type_name)
            }
            _ => false,
        };
        if !ok {
            let want = if mutable {
                format!("&mut {type_name}")
            } else {
                format!("&{type_name}")
            };
            return Err(wrong(
                typed.ty.span(),
                &format!("argument must be `{want}`"),
            ));
        }
    }
    match &sig.output {
        ReturnType::Type(_, ty) if last_segment(ty).as_deref() == Some("Result") => Ok(()),
        ReturnType::Type(_, ty) => Err(wrong(ty.span(), "must return a `Result`")),
        ReturnType::Default => Err(wrong(sig.ident.span(), "must return a `Result`")),
    }
}

fn last_segment(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(path) => path.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    }
}
