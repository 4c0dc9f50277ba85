//! Leases on the pull-through cache's upstream fetches, shared by every server of one
//! database: the server holding the lease of `REPOSITORY@DIGEST` fetches that blob from the
//! upstream; the others wait for it to be stored. The holder renews the lease while it
//! fetches; one whose holder died runs out and is taken over.

use crate::{MetaStore, Result};

impl MetaStore {
    /// Takes (or renews, for the same `owner`) the lease of `target` until `now_ms +
    /// lease_ms`: whether `owner` holds it now. A lease another owner holds is taken only
    /// once it ran out.
    pub async fn claim_fetch_lease(
        &self,
        target: &str,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<bool> {
        let held: Option<String> = sqlx::query_scalar(
            "INSERT INTO upstream_fetches (target, owner, until_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (target) DO UPDATE SET owner = excluded.owner, until_ms = excluded.until_ms \
             WHERE upstream_fetches.owner = excluded.owner OR upstream_fetches.until_ms < $4 \
             RETURNING owner",
        )
        .bind(target)
        .bind(owner)
        .bind(now_ms + lease_ms)
        .bind(now_ms)
        .fetch_optional(&self.writer)
        .await?;
        Ok(held.is_some())
    }

    /// Gives up `owner`'s lease of `target` (nothing when another holds it).
    pub async fn release_fetch_lease(&self, target: &str, owner: &str) -> Result<()> {
        sqlx::query("DELETE FROM upstream_fetches WHERE target = $1 AND owner = $2")
            .bind(target)
            .bind(owner)
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::fresh_store;

    #[tokio::test]
    async fn a_fetch_lease_is_held_by_one_owner_until_released_or_run_out() {
        let (_dir, _, store) = fresh_store().await;
        let target = "origin/team/app@sha256:aa";
        assert!(store
            .claim_fetch_lease(target, "a", 1_000, 100)
            .await
            .unwrap());
        assert!(!store
            .claim_fetch_lease(target, "b", 1_050, 100)
            .await
            .unwrap());
        // Renewed by its owner, it runs longer.
        assert!(store
            .claim_fetch_lease(target, "a", 1_090, 100)
            .await
            .unwrap());
        assert!(!store
            .claim_fetch_lease(target, "b", 1_150, 100)
            .await
            .unwrap());
        // Run out: taken over.
        assert!(store
            .claim_fetch_lease(target, "b", 1_191, 100)
            .await
            .unwrap());
        assert!(!store
            .claim_fetch_lease(target, "a", 1_200, 100)
            .await
            .unwrap());
        // Released by its owner only.
        store.release_fetch_lease(target, "a").await.unwrap();
        assert!(!store
            .claim_fetch_lease(target, "a", 1_210, 100)
            .await
            .unwrap());
        store.release_fetch_lease(target, "b").await.unwrap();
        assert!(store
            .claim_fetch_lease(target, "a", 1_220, 100)
            .await
            .unwrap());
    }
}
