//! The UI's query and form extractors: axum's, with a bad parameter shown as the UI's error
//! page (400) rather than axum's plain text.

use axum::extract::{Form, FromRequest, FromRequestParts, Query, Request};
use http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::PageError;

/// A page's query parameters.
pub(crate) struct PageQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for PageQuery<T> {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, PageError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| PageQuery(value))
            .map_err(|e| PageError::BadRequest(format!("the page's address: {}", e.body_text())))
    }
}

/// A form's fields.
pub(crate) struct PageForm<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for PageForm<T> {
    type Rejection = PageError;

    async fn from_request(request: Request, state: &S) -> Result<Self, PageError> {
        Form::<T>::from_request(request, state)
            .await
            .map(|Form(value)| PageForm(value))
            .map_err(|e| PageError::BadRequest(format!("the form: {}", e.body_text())))
    }
}
