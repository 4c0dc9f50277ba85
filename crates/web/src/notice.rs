//! What a form did, said once on the page it leads back to: the form answers with a redirect
//! to that page with `?done=KEY`, and the page shows KEY's fixed text at its top. Only the
//! texts here can be shown, so a link cannot make a page say anything else.

use axum::response::{IntoResponse, Redirect};

use crate::pages::Page;

/// The outcome of a form that succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Done {
    Saved,
    Created,
    Removed,
    Revoked,
    Deleted,
    /// A webhook's test delivery was queued.
    TestSent,
    /// A replication or preheat run was queued.
    RunStarted,
    /// An artifact's scans were queued.
    ScanStarted,
}

impl Done {
    const ALL: [Done; 8] = [
        Done::Saved,
        Done::Created,
        Done::Removed,
        Done::Revoked,
        Done::Deleted,
        Done::TestSent,
        Done::RunStarted,
        Done::ScanStarted,
    ];

    /// Its name in the `done` query parameter.
    fn key(self) -> &'static str {
        match self {
            Done::Saved => "saved",
            Done::Created => "created",
            Done::Removed => "removed",
            Done::Revoked => "revoked",
            Done::Deleted => "deleted",
            Done::TestSent => "test-sent",
            Done::RunStarted => "run-started",
            Done::ScanStarted => "scan-started",
        }
    }

    /// What the page says.
    pub(crate) fn text(self) -> &'static str {
        match self {
            Done::Saved => "Saved.",
            Done::Created => "Created.",
            Done::Removed => "Removed.",
            Done::Revoked => "Revoked: it can no longer be used.",
            Done::Deleted => "Deleted.",
            Done::TestSent => "Test delivery queued: it shows in the deliveries below.",
            Done::RunStarted => "Run queued: its result shows in the rule's last run.",
            Done::ScanStarted => "Scan queued: reload this page in a moment for its result.",
        }
    }

    /// The outcome named by the `done` parameter of `query` (a URI's query string), if any.
    pub(crate) fn in_query(query: Option<&str>) -> Option<Done> {
        let key = query?
            .split('&')
            .find_map(|pair| pair.strip_prefix("done="))?;
        Done::ALL.into_iter().find(|done| done.key() == key)
    }
}

/// A redirect (303) to `location` (a path, with or without a query) that says `done` there.
pub(crate) fn redirect(location: &str, done: Done) -> Page {
    let separator = if location.contains('?') { '&' } else { '?' };
    Ok(Redirect::to(&format!("{location}{separator}done={}", done.key())).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_is_found_by_its_key_and_nothing_else_is() {
        for done in Done::ALL {
            let query = format!("tab=x&done={}", done.key());
            assert_eq!(Done::in_query(Some(&query)), Some(done));
        }
        for query in [
            None,
            Some(""),
            Some("done="),
            Some("done=<b>hi</b>"),
            Some("xdone=saved"),
        ] {
            assert_eq!(Done::in_query(query), None, "{query:?}");
        }
    }

    #[test]
    fn a_redirect_adds_the_outcome_to_the_query_it_keeps() {
        let location = |page: Page| {
            page.unwrap().headers()[http::header::LOCATION]
                .to_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(
            location(redirect("/admin", Done::Saved)),
            "/admin?done=saved"
        );
        assert_eq!(
            location(redirect("/artifact?repository=a%2Fb", Done::ScanStarted)),
            "/artifact?repository=a%2Fb&done=scan-started"
        );
    }
}
