//! Every page of a Databricks listing, the one way both the export and the activation step read them.
//!
//! The APIs page alike: the answer's `next_page_token` (absent or empty on the last page) is sent back as the
//! request's page parameter (`page_token`; the Repos API names it `next_page_token`). A server that answers
//! the same token twice, or pages without end, ends the listing with an error rather than a loop.

use dr_ports::ApiError;
use serde_json::Value;
use std::future::Future;

/// More pages than any listing of a real workspace has (100 items a page: a million objects).
pub const MAX_PAGES: usize = 10_000;

/// One listing: what it is and how it pages.
#[derive(Debug, Clone, Copy)]
pub struct Listing<'a> {
    /// The API path, e.g. `/api/2.2/jobs/list`.
    pub path: &'a str,
    /// The answer's array of items, e.g. `jobs`.
    pub items: &'a str,
    /// The request's page parameter: `page_token`, or `next_page_token` for the Repos API.
    pub page_param: &'a str,
    /// The page size's parameter and value, where the API takes one.
    pub size: Option<(&'a str, u32)>,
}

/// Every page of `listing`, `base` sent with each request and `get` sending it. What came before an error is
/// kept beside it: the export records it as `partial`, activation treats any error as the listing's.
pub async fn every_page<'a, F, Fut>(listing: Listing<'a>, base: &[(&'a str, String)], get: F) -> (Vec<Value>, Option<ApiError>)
where
    F: Fn(Vec<(&'a str, String)>) -> Fut,
    Fut: Future<Output = Result<Value, ApiError>>,
{
    let bad = |problem: String| Some(ApiError::BadAnswer { path: listing.path.to_owned(), problem });
    let mut objects = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut query = base.to_vec();
        if let Some((param, size)) = listing.size {
            query.push((param, size.to_string()));
        }
        if let Some(t) = &token {
            query.push((listing.page_param, t.clone()));
        }
        let page = match get(query).await {
            Ok(page) => page,
            Err(e) => return (objects, Some(e)),
        };
        match page.get(listing.items) {
            Some(Value::Array(a)) => objects.extend(a.iter().cloned()),
            None | Some(Value::Null) => {}
            Some(_) => return (objects, bad(format!("`{}` is not an array", listing.items))),
        }
        match page.get("next_page_token").and_then(Value::as_str).filter(|t| !t.is_empty()) {
            Some(next) if token.as_deref() == Some(next) => {
                return (objects, bad("the same next_page_token twice".to_owned()));
            }
            Some(next) => token = Some(next.to_owned()),
            None => return (objects, None),
        }
    }
    (objects, bad(format!("more than {MAX_PAGES} pages")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Mutex;

    const JOBS: Listing<'static> =
        Listing { path: "/api/2.2/jobs/list", items: "jobs", page_param: "page_token", size: Some(("limit", 2)) };

    /// A request's query, owned.
    type Sent = Vec<(String, String)>;

    /// Answers the pages in order; returns what was gathered and every query sent.
    async fn run(answers: Vec<Value>) -> (Vec<Value>, Option<ApiError>, Vec<Sent>) {
        let left: Mutex<Vec<Value>> = Mutex::new(answers.into_iter().rev().collect());
        let sent: Mutex<Vec<Sent>> = Mutex::new(Vec::new());
        let (objects, error) = every_page(JOBS, &[("expand_tasks", "true".to_owned())], |q| {
            sent.lock().unwrap().push(q.iter().map(|(k, v)| (k.to_string(), v.clone())).collect());
            let next = left.lock().unwrap().pop();
            async move { next.ok_or_else(|| ApiError::Timeout("no more answers".into())) }
        })
        .await;
        (objects, error, sent.into_inner().unwrap())
    }

    fn q(pairs: &[(&str, &str)]) -> Sent {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[tokio::test]
    async fn follows_the_tokens_to_the_last_page() {
        let (objects, error, sent) = run(vec![
            json!({"jobs": [{"job_id": 1}, {"job_id": 2}], "next_page_token": "t2"}),
            json!({"jobs": [{"job_id": 3}], "next_page_token": ""}),
        ])
        .await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(objects, vec![json!({"job_id": 1}), json!({"job_id": 2}), json!({"job_id": 3})]);
        assert_eq!(
            sent,
            vec![
                q(&[("expand_tasks", "true"), ("limit", "2")]),
                q(&[("expand_tasks", "true"), ("limit", "2"), ("page_token", "t2")])
            ]
        );
    }

    #[tokio::test]
    async fn an_empty_listing_has_no_array() {
        let (objects, error, _) = run(vec![json!({})]).await;
        assert!(objects.is_empty() && error.is_none());
    }

    #[tokio::test]
    async fn keeps_what_came_before_an_error() {
        let (objects, error, _) = run(vec![json!({"jobs": [{"job_id": 1}], "next_page_token": "t2"})]).await;
        assert_eq!(objects, vec![json!({"job_id": 1})]);
        assert!(matches!(error, Some(ApiError::Timeout(_))), "{error:?}");
    }

    #[tokio::test]
    async fn a_repeated_token_or_a_wrong_shape_is_a_bad_answer_not_a_loop() {
        let (objects, error, sent) = run(vec![
            json!({"jobs": [{"job_id": 1}], "next_page_token": "t"}),
            json!({"jobs": [{"job_id": 2}], "next_page_token": "t"}),
        ])
        .await;
        assert_eq!(objects.len(), 2);
        assert_eq!(sent.len(), 2);
        assert!(matches!(&error, Some(ApiError::BadAnswer { problem, .. }) if problem.contains("same next_page_token")));

        let (_, error, _) = run(vec![json!({"jobs": {"job_id": 1}})]).await;
        assert!(matches!(&error, Some(ApiError::BadAnswer { problem, .. }) if problem.contains("not an array")));
    }
}
