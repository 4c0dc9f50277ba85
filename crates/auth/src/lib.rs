//! Who may do what. Pure building blocks the server's auth middleware and token endpoint use:
//! password hashing, the roles of a project, the Docker token spec's scopes, and the ES256
//! tokens the registry issues and verifies. Nothing here touches HTTP or the database.

pub mod password;
pub mod policy;
pub mod rbac;
pub mod scope;
pub mod sealed;
pub mod secret;
pub mod throttle;
pub mod token;

pub use policy::{allows, Identity, ProjectAccess, Target};
pub use rbac::{Action, Role};
pub use scope::{Scope, ScopeError};
pub use token::{Claims, TokenError, TokenKey};
