//! Users, projects and project membership.

use sqlx::Row;

use crate::{conflict, flag, now, MetaStore, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub name: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    pub system_admin: bool,
}

/// A `users` row selected as `id, name, password_hash, system_admin`.
fn user_row(r: sqlx::any::AnyRow) -> User {
    User {
        id: r.get(0),
        name: r.get(1),
        password_hash: r.get(2),
        system_admin: flag(&r, 3),
    }
}

/// What the store knows for an access decision on one project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectAccessRow {
    pub public: bool,
    /// The asking user's role name, if a member.
    pub role: Option<String>,
}

/// The role name a project's creator receives (the auth crate defines roles by these names).
pub const PROJECT_ADMIN_ROLE: &str = "project-admin";

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
        .bind(i64::from(system_admin))
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
        Ok(row.map(user_row))
    }

    pub async fn user_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.readers)
            .await?)
    }

    /// Users by name.
    pub async fn users(&self) -> Result<Vec<User>> {
        let rows =
            sqlx::query("SELECT id, name, password_hash, system_admin FROM users ORDER BY name")
                .fetch_all(&self.readers)
                .await?;
        Ok(rows.into_iter().map(user_row).collect())
    }

    pub async fn set_password(&self, name: &str, password_hash: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE name = $2")
            .bind(password_hash)
            .bind(name)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes a user and their memberships.
    pub async fn delete_user(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM users WHERE name = $1")
            .bind(name)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Creates a project, and makes `owner` (if given) its project admin in the same
    /// transaction, so a project never exists without the member who created it.
    pub async fn create_project(
        &self,
        name: &str,
        public: bool,
        owner: Option<&str>,
    ) -> Result<i64> {
        let mut tx = self.begin_write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO projects (name, public, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(name)
        .bind(i64::from(public))
        .bind(now())
        .fetch_one(&mut *tx)
        .await
        .map_err(conflict(format!("project {name:?} already exists")))?;
        if let Some(owner) = owner {
            sqlx::query(
                "INSERT INTO project_members (project_id, user_id, role) \
                 SELECT $1, id, $2 FROM users WHERE name = $3",
            )
            .bind(id)
            .bind(PROJECT_ADMIN_ROLE)
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    pub async fn projects(&self) -> Result<Vec<Project>> {
        let rows = sqlx::query("SELECT id, name, public FROM projects ORDER BY name")
            .fetch_all(&self.readers)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| Project {
                id: r.get(0),
                name: r.get(1),
                public: flag(&r, 2),
            })
            .collect())
    }

    pub async fn set_project_public(&self, name: &str, public: bool) -> Result<bool> {
        let done = sqlx::query("UPDATE projects SET public = $1 WHERE name = $2")
            .bind(i64::from(public))
            .bind(name)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Whether `project` exists, whether it is public, and `user`'s role in it (if any):
    /// everything an access decision needs, in one query.
    pub async fn project_access(
        &self,
        project: &str,
        user: Option<&str>,
    ) -> Result<Option<ProjectAccessRow>> {
        let row = sqlx::query(
            "SELECT p.public, m.role FROM projects p \
             LEFT JOIN users u ON u.name = $2 \
             LEFT JOIN project_members m ON m.project_id = p.id AND m.user_id = u.id \
             WHERE p.name = $1",
        )
        .bind(project)
        .bind(user)
        .fetch_optional(&self.readers)
        .await?;
        Ok(row.map(|r| ProjectAccessRow {
            public: flag(&r, 0),
            role: r.get(1),
        }))
    }

    /// Members of a project and their roles, by user name.
    pub async fn members(&self, project: &str) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT u.name, m.role FROM project_members m JOIN projects p ON p.id = m.project_id \
             JOIN users u ON u.id = m.user_id WHERE p.name = $1 ORDER BY u.name",
        )
        .bind(project)
        .fetch_all(&self.readers)
        .await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub async fn project(&self, name: &str) -> Result<Option<Project>> {
        let row = sqlx::query("SELECT id, name, public FROM projects WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.readers)
            .await?;
        Ok(row.map(|r| Project {
            id: r.get(0),
            name: r.get(1),
            public: flag(&r, 2),
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
    use super::PROJECT_ADMIN_ROLE;
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
        store.create_project("team-a", false, None).await.unwrap();
        assert!(matches!(
            store.create_project("team-a", true, None).await,
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

    #[tokio::test]
    async fn project_access_is_one_lookup_and_creators_become_admins() {
        let (_dir, store) = store().await;
        store.create_user("alice", "h", false).await.unwrap();
        store.create_user("bob", "h", false).await.unwrap();
        store
            .create_project("team-a", true, Some("alice"))
            .await
            .unwrap();
        let access = |user| {
            let store = store.clone();
            async move { store.project_access("team-a", user).await.unwrap() }
        };
        let alice = access(Some("alice")).await.unwrap();
        assert!(alice.public);
        assert_eq!(alice.role.as_deref(), Some(PROJECT_ADMIN_ROLE));
        assert_eq!(access(Some("bob")).await.unwrap().role, None);
        assert_eq!(access(None).await.unwrap().role, None);
        assert_eq!(access(Some("nobody")).await.unwrap().role, None);
        assert!(store
            .project_access("nope", Some("alice"))
            .await
            .unwrap()
            .is_none());

        assert!(store.set_project_public("team-a", false).await.unwrap());
        assert!(!access(None).await.unwrap().public);
        assert_eq!(
            store.members("team-a").await.unwrap(),
            [("alice".to_string(), PROJECT_ADMIN_ROLE.to_string())]
        );
        assert!(store.delete_user("alice").await.unwrap());
        assert!(store.members("team-a").await.unwrap().is_empty());
        assert_eq!(
            store
                .projects()
                .await
                .unwrap()
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>(),
            ["team-a"]
        );
    }

    #[tokio::test]
    async fn projects_with_repositories_cannot_be_deleted() {
        let (_dir, store) = store().await;
        store.create_project("team-a", false, None).await.unwrap();
        store.create_project("team", false, None).await.unwrap();
        store
            .link_blob("team-a/app", &gantry_oci::Digest::sha256_of(b"x"), 1)
            .await
            .unwrap();
        assert!(matches!(
            store.delete_project("team-a").await,
            Err(MetaError::Conflict(m)) if m.contains("1 repositories (team-a/app)")
        ));
        // A project whose name is a prefix of another's is not held back by it.
        assert!(store.delete_project("team").await.unwrap().is_some());
        assert!(store.delete_project("team").await.unwrap().is_none());
    }
}
