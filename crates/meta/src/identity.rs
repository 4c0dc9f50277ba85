//! Users, projects and project membership.

use sqlx::Row;

use crate::{conflict, now, MetaStore, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub name: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    pub system_admin: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub id: i64,
    pub name: String,
    pub public: bool,
}

impl MetaStore {
    pub async fn create_user(
        &self,
        name: &str,
        password_hash: &str,
        system_admin: bool,
    ) -> Result<i64> {
        let id = sqlx::query_scalar(
            "INSERT INTO users (name, password_hash, system_admin, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(name)
        .bind(password_hash)
        .bind(system_admin)
        .bind(now())
        .fetch_one(&self.writer)
        .await
        .map_err(conflict(format!("user {name:?} already exists")))?;
        Ok(id)
    }

    pub async fn user(&self, name: &str) -> Result<Option<User>> {
        let row =
            sqlx::query("SELECT id, name, password_hash, system_admin FROM users WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.readers)
                .await?;
        Ok(row.map(|r| User {
            id: r.get(0),
            name: r.get(1),
            password_hash: r.get(2),
            system_admin: r.get(3),
        }))
    }

    pub async fn user_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.readers)
            .await?)
    }

    pub async fn create_project(&self, name: &str, public: bool) -> Result<i64> {
        let id = sqlx::query_scalar(
            "INSERT INTO projects (name, public, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(name)
        .bind(public)
        .bind(now())
        .fetch_one(&self.writer)
        .await
        .map_err(conflict(format!("project {name:?} already exists")))?;
        Ok(id)
    }

    pub async fn project(&self, name: &str) -> Result<Option<Project>> {
        let row = sqlx::query("SELECT id, name, public FROM projects WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.readers)
            .await?;
        Ok(row.map(|r| Project {
            id: r.get(0),
            name: r.get(1),
            public: r.get(2),
        }))
    }

    /// Makes `user` a member of `project` with `role`, replacing any earlier role. Returns
    /// false when the project or the user does not exist.
    pub async fn set_member(&self, project: &str, user: &str, role: &str) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO project_members (project_id, user_id, role) \
             SELECT p.id, u.id, $3 FROM projects p, users u WHERE p.name = $1 AND u.name = $2 \
             ON CONFLICT (project_id, user_id) DO UPDATE SET role = excluded.role",
        )
        .bind(project)
        .bind(user)
        .bind(role)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn remove_member(&self, project: &str, user: &str) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM project_members WHERE project_id = (SELECT id FROM projects WHERE name = $1) \
             AND user_id = (SELECT id FROM users WHERE name = $2)",
        )
        .bind(project)
        .bind(user)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The role name `user` has in `project`, if a member.
    pub async fn member_role(&self, project: &str, user: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT m.role FROM project_members m JOIN projects p ON p.id = m.project_id \
             JOIN users u ON u.id = m.user_id WHERE p.name = $1 AND u.name = $2",
        )
        .bind(project)
        .bind(user)
        .fetch_optional(&self.readers)
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::store;
    use crate::MetaError;

    #[tokio::test]
    async fn users_are_unique_and_found_by_name() {
        let (_dir, store) = store().await;
        assert_eq!(store.user_count().await.unwrap(), 0);
        let id = store
            .create_user("alice", "$argon2id$x", false)
            .await
            .unwrap();
        let alice = store.user("alice").await.unwrap().unwrap();
        assert_eq!(
            (alice.id, alice.system_admin, alice.password_hash.as_str()),
            (id, false, "$argon2id$x")
        );
        assert!(
            matches!(store.create_user("alice", "h", true).await, Err(MetaError::Conflict(m)) if m.contains("alice"))
        );
        assert!(store.user("bob").await.unwrap().is_none());
        assert_eq!(store.user_count().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn membership_roles_are_set_replaced_and_removed() {
        let (_dir, store) = store().await;
        store.create_user("alice", "h", false).await.unwrap();
        store.create_project("team-a", false).await.unwrap();
        assert!(matches!(
            store.create_project("team-a", true).await,
            Err(MetaError::Conflict(_))
        ));
        assert!(!store.project("team-a").await.unwrap().unwrap().public);

        assert!(!store.set_member("nope", "alice", "guest").await.unwrap());
        assert!(!store.set_member("team-a", "nobody", "guest").await.unwrap());
        assert!(store.set_member("team-a", "alice", "guest").await.unwrap());
        assert_eq!(
            store
                .member_role("team-a", "alice")
                .await
                .unwrap()
                .as_deref(),
            Some("guest")
        );
        store
            .set_member("team-a", "alice", "maintainer")
            .await
            .unwrap();
        assert_eq!(
            store
                .member_role("team-a", "alice")
                .await
                .unwrap()
                .as_deref(),
            Some("maintainer")
        );
        assert!(store.remove_member("team-a", "alice").await.unwrap());
        assert_eq!(store.member_role("team-a", "alice").await.unwrap(), None);
    }
}
