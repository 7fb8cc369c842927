//! `/saml/metadata`, `/saml/login` and `/saml/acs`: the HTTP side of [`super::sp`], ending
//! in the same console session the token and OIDC sign-ins create.

use crate::console::Console;
use axum::extract::{Form, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use std::collections::HashMap;
use std::sync::Arc;

type C = State<Arc<Console>>;

pub(crate) fn routes() -> Router<Arc<Console>> {
    Router::new().route("/saml/metadata", get(metadata)).route("/saml/login", get(login)).route(super::ACS_PATH, post(acs))
}

fn not_configured() -> Response {
    (StatusCode::NOT_FOUND, "SAML sign-in is not configured (no [saml] section)").into_response()
}

async fn metadata(State(c): C) -> Response {
    let Some(sp) = c.api().identity.saml.clone() else { return not_configured() };
    ([(header::CONTENT_TYPE, "application/samlmetadata+xml")], sp.metadata_xml().to_string()).into_response()
}

async fn login(State(c): C) -> Response {
    let Some(sp) = c.api().identity.saml.clone() else { return not_configured() };
    match sp.start_login() {
        Ok(url) => Redirect::to(&url).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "saml: cannot start a sign-in");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot start the SAML sign-in").into_response()
        }
    }
}

async fn acs(State(c): C, Form(form): Form<HashMap<String, String>>) -> Response {
    let Some(sp) = c.api().identity.saml.clone() else { return not_configured() };
    let response = form.get("SAMLResponse").cloned().unwrap_or_default();
    let relay = form.get("RelayState").cloned().unwrap_or_default();
    if response.is_empty() {
        return c.refuse_sign_in("saml", None, "no SAMLResponse in the form".into());
    }
    // libxmlsec1 is synchronous and CPU-bound.
    let verifier = sp.clone();
    let verified = match tokio::task::spawn_blocking(move || verifier.verify(&response, &relay)).await {
        Ok(v) => v,
        Err(_) => return (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response(),
    };
    let human = match verified {
        Ok(h) => h,
        Err(why) => return c.refuse_sign_in("saml", None, why),
    };
    let human = crate::oidc::Human { subject: human.email.clone(), email: human.email, groups: human.groups, roles: Vec::new() };
    c.finish_sign_in("saml", human, |g| sp.roles_for(g)).await
}
