//! `/projects/{project}/repositories`: a project's repositories with their figures (artifact
//! count, deduplicated size, last push and pull, pulls), sorted and paged. The query
//! parameters of every browse listing ([`BrowseParams`]) are read here too.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use gantry_auth::Action;
use gantry_registry::{BrowseOptions, BrowseSort, BROWSE_DEFAULT_PAGE};
use serde::Deserialize;
use serde_json::json;

use super::limits::{self, within};
use super::{ok, ApiCaller, ApiResult, Params, PathParams};
use crate::AppState;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new().route(
        "/api/v1/projects/{project}/repositories",
        get(list_repositories),
    )
}

#[cfg(test)]
pub(super) const ROUTES: &[(&str, &str)] = &[("get", "/api/v1/projects/{project}/repositories")];

/// `?sort=name|pushed|pulled|size&order=asc|desc&limit=N&page=TOKEN` of the browse listings.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BrowseParams {
    #[serde(default)]
    sort: Option<SortParam>,
    #[serde(default)]
    order: Option<OrderParam>,
    limit: Option<u32>,
    page: Option<String>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum SortParam {
    Name,
    Pushed,
    Pulled,
    Size,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum OrderParam {
    Asc,
    Desc,
}

impl BrowseParams {
    /// The options these parameters ask for; without `sort`, `default_sort`, and without
    /// `order`, ascending names and descending figures (newest, largest, most recent first).
    pub(super) fn options(
        self,
        default_sort: BrowseSort,
    ) -> Result<BrowseOptions, crate::error::ApiError> {
        let sort = match self.sort {
            None => default_sort,
            Some(SortParam::Name) => BrowseSort::Name,
            Some(SortParam::Pushed) => BrowseSort::Pushed,
            Some(SortParam::Pulled) => BrowseSort::Pulled,
            Some(SortParam::Size) => BrowseSort::Size,
        };
        let descending = match self.order {
            Some(OrderParam::Asc) => false,
            Some(OrderParam::Desc) => true,
            None => sort != BrowseSort::Name,
        };
        let limit = within(
            "limit",
            self.limit.unwrap_or(BROWSE_DEFAULT_PAGE),
            limits::BROWSE_LIMIT,
        )?;
        Ok(BrowseOptions {
            sort,
            descending,
            limit,
            page: self.page,
        })
    }
}

async fn list_repositories(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(project): PathParams<String>,
    Params(params): Params<BrowseParams>,
) -> ApiResult {
    state
        .access
        .require(&actor, &project, Action::List, "list repositories")
        .await?;
    let options = params.options(BrowseSort::Name)?;
    let page = state
        .registry
        .browse_repositories(&project, &options)
        .await?;
    ok(json!({"repositories": page.items, "next": page.next}))
}
