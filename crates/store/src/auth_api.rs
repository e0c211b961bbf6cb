//! etcd's Auth gRPC service on every member: enable and disable, tokens, users and
//! roles. Changes go through the log ([`crate::auth::AuthCommand`], admin-checked as
//! they are applied); reads are answered after a read barrier, so a user just added on
//! another member is seen, as etcd's linearizable auth reads.

use crate::auth::{self, AuthCommand, PermKind, Permission};
use crate::server::recipes_pb::authpb;
use crate::server::recipes_pb::etcdserverpb::auth_server::Auth;
use crate::server::recipes_pb::etcdserverpb::*;
use crate::server::Api;
use orbit_kv::{AuthError, KvError};
use tonic::{Request, Response, Status};

type GrpcResult<T> = Result<Response<T>, Status>;

fn st(e: impl Into<KvError>) -> Status {
    orbit_kv::pb::error_to_status(&e.into())
}

/// `password`'s Argon2id hash, made off the async threads (it takes tens of ms by
/// design).
async fn hash(password: String) -> Result<String, Status> {
    tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|e| Status::internal(format!("hashing the password: {e}")))
}

/// The password of a request that may carry etcd's pre-hashed (bcrypt) form instead.
fn plain_password(password: String, hashed: &str) -> Result<String, Status> {
    if password.is_empty() && !hashed.is_empty() {
        return Err(Status::invalid_argument(
            "etcdserver: orbit's store takes passwords, not bcrypt hashes (hashedPassword); send the password over TLS",
        ));
    }
    Ok(password)
}

impl Api {
    /// Proposes `cmd` as the request's user and answers with a bare header.
    async fn change<T>(&self, request: &Request<T>, cmd: AuthCommand) -> Result<(), Status> {
        let caller = self.user_of(request)?;
        self.node.auth_change(caller, cmd).await.map_err(st)
    }

    /// Refuses early a request whose change its caller may not make, before the
    /// slow password hashing (the log's apply checks again).
    fn precheck_admin<T>(&self, request: &Request<T>) -> Result<(), Status> {
        self.kv_of(request)?.require_admin().map_err(st)
    }

    fn auth_header(&self) -> Option<etcd_client::proto::PbResponseHeader> {
        self.header(self.revision())
    }
}

/// An answer that is only a header.
macro_rules! header_only {
    ($api:expr, $t:ident) => {
        Ok(Response::new($t {
            header: $api.auth_header(),
        }))
    };
}

#[tonic::async_trait]
impl Auth for Api {
    async fn auth_enable(
        &self,
        request: Request<AuthEnableRequest>,
    ) -> GrpcResult<AuthEnableResponse> {
        let mut secret = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
        self.change(&request, AuthCommand::Enable { secret })
            .await?;
        header_only!(self, AuthEnableResponse)
    }

    async fn auth_disable(
        &self,
        request: Request<AuthDisableRequest>,
    ) -> GrpcResult<AuthDisableResponse> {
        self.change(&request, AuthCommand::Disable).await?;
        header_only!(self, AuthDisableResponse)
    }

    async fn auth_status(
        &self,
        request: Request<AuthStatusRequest>,
    ) -> GrpcResult<AuthStatusResponse> {
        self.user_of(&request)?;
        self.node.read_barrier().await.map_err(st)?;
        let (enabled, revision) = {
            let s = self.node.shared().read();
            (s.auth.enabled, s.auth.revision)
        };
        Ok(Response::new(AuthStatusResponse {
            header: self.auth_header(),
            enabled,
            auth_revision: revision,
        }))
    }

    async fn authenticate(
        &self,
        request: Request<AuthenticateRequest>,
    ) -> GrpcResult<AuthenticateResponse> {
        let r = request.into_inner();
        self.node.read_barrier().await.map_err(st)?;
        let stored = {
            let s = self.node.shared().read();
            if !s.auth.enabled {
                return Err(st(AuthError::NotEnabled));
            }
            // No such user and a user without a password fail alike, as etcd.
            s.auth
                .users
                .get(&r.name)
                .and_then(|u| u.password.clone())
                .ok_or_else(|| st(AuthError::Failed))?
        };
        let (password, checked) = (r.password, stored.clone());
        let ok = tokio::task::spawn_blocking(move || auth::verify_password(&password, &checked))
            .await
            .map_err(|e| Status::internal(format!("checking the password: {e}")))?;
        if !ok {
            tracing::info!(user = %r.name, "authentication failed");
            return Err(st(AuthError::Failed));
        }
        let ttl = self.node.config().auth_token_ttl_s;
        // Sealed to the hash just checked: a password changed meanwhile voids it.
        let token = self
            .node
            .shared()
            .read()
            .auth
            .mint_token(&r.name, &stored, auth::unix_now(), ttl)
            .map_err(st)?;
        Ok(Response::new(AuthenticateResponse {
            header: self.auth_header(),
            token,
        }))
    }

    async fn user_add(
        &self,
        request: Request<AuthUserAddRequest>,
    ) -> GrpcResult<AuthUserAddResponse> {
        self.precheck_admin(&request)?;
        let caller = self.user_of(&request)?;
        let r = request.into_inner();
        if r.name.is_empty() {
            return Err(st(AuthError::UserEmpty));
        }
        let no_password = r.options.is_some_and(|o| o.no_password);
        let password = if no_password {
            None
        } else {
            Some(hash(plain_password(r.password, &r.hashed_password)?).await?)
        };
        let cmd = AuthCommand::UserAdd {
            name: r.name,
            password,
        };
        self.node.auth_change(caller, cmd).await.map_err(st)?;
        header_only!(self, AuthUserAddResponse)
    }

    async fn user_get(
        &self,
        request: Request<AuthUserGetRequest>,
    ) -> GrpcResult<AuthUserGetResponse> {
        let caller = self.user_of(&request)?;
        let name = request.into_inner().name;
        self.node.read_barrier().await.map_err(st)?;
        let s = self.node.shared().read();
        // A user may read its own roles; others' only an admin.
        if let Err(e) = s.auth.check_admin(caller.as_deref()) {
            if caller.as_deref() != Some(name.as_str()) {
                return Err(st(e));
            }
        }
        let user = s
            .auth
            .users
            .get(&name)
            .ok_or_else(|| st(AuthError::UserNotFound))?;
        Ok(Response::new(AuthUserGetResponse {
            header: self.auth_header(),
            roles: user.roles.iter().cloned().collect(),
        }))
    }

    async fn user_list(
        &self,
        request: Request<AuthUserListRequest>,
    ) -> GrpcResult<AuthUserListResponse> {
        self.precheck_admin(&request)?;
        self.node.read_barrier().await.map_err(st)?;
        let users = self
            .node
            .shared()
            .read()
            .auth
            .users
            .keys()
            .cloned()
            .collect();
        Ok(Response::new(AuthUserListResponse {
            header: self.auth_header(),
            users,
        }))
    }

    async fn user_delete(
        &self,
        request: Request<AuthUserDeleteRequest>,
    ) -> GrpcResult<AuthUserDeleteResponse> {
        let name = request.get_ref().name.clone();
        self.change(&request, AuthCommand::UserDelete { name })
            .await?;
        header_only!(self, AuthUserDeleteResponse)
    }

    async fn user_change_password(
        &self,
        request: Request<AuthUserChangePasswordRequest>,
    ) -> GrpcResult<AuthUserChangePasswordResponse> {
        self.precheck_admin(&request)?;
        let caller = self.user_of(&request)?;
        let r = request.into_inner();
        let password = hash(plain_password(r.password, &r.hashed_password)?).await?;
        let cmd = AuthCommand::UserChangePassword {
            name: r.name,
            password,
        };
        self.node.auth_change(caller, cmd).await.map_err(st)?;
        header_only!(self, AuthUserChangePasswordResponse)
    }

    async fn user_grant_role(
        &self,
        request: Request<AuthUserGrantRoleRequest>,
    ) -> GrpcResult<AuthUserGrantRoleResponse> {
        let AuthUserGrantRoleRequest { user, role } = request.get_ref().clone();
        self.change(&request, AuthCommand::UserGrantRole { user, role })
            .await?;
        header_only!(self, AuthUserGrantRoleResponse)
    }

    async fn user_revoke_role(
        &self,
        request: Request<AuthUserRevokeRoleRequest>,
    ) -> GrpcResult<AuthUserRevokeRoleResponse> {
        let AuthUserRevokeRoleRequest { name, role } = request.get_ref().clone();
        self.change(&request, AuthCommand::UserRevokeRole { name, role })
            .await?;
        header_only!(self, AuthUserRevokeRoleResponse)
    }

    async fn role_add(
        &self,
        request: Request<AuthRoleAddRequest>,
    ) -> GrpcResult<AuthRoleAddResponse> {
        let name = request.get_ref().name.clone();
        self.change(&request, AuthCommand::RoleAdd { name }).await?;
        header_only!(self, AuthRoleAddResponse)
    }

    async fn role_get(
        &self,
        request: Request<AuthRoleGetRequest>,
    ) -> GrpcResult<AuthRoleGetResponse> {
        let caller = self.user_of(&request)?;
        let name = request.into_inner().role;
        self.node.read_barrier().await.map_err(st)?;
        let s = self.node.shared().read();
        // A user may read the roles it has; others only an admin.
        if let Err(e) = s.auth.check_admin(caller.as_deref()) {
            let has = caller
                .as_deref()
                .and_then(|c| s.auth.users.get(c))
                .is_some_and(|u| u.roles.contains(&name));
            if !has {
                return Err(st(e));
            }
        }
        let role = s
            .auth
            .roles
            .get(&name)
            .ok_or_else(|| st(AuthError::RoleNotFound))?;
        let perm = if name == auth::ROOT {
            // etcd shows root's implicit permission: everything, read and write.
            vec![authpb::Permission {
                perm_type: PermKind::ReadWrite.to_pb(),
                key: Vec::new(),
                range_end: vec![0],
            }]
        } else {
            role.perms
                .iter()
                .map(|p| authpb::Permission {
                    perm_type: p.kind.to_pb(),
                    key: p.key.clone(),
                    range_end: p.range_end.clone(),
                })
                .collect()
        };
        Ok(Response::new(AuthRoleGetResponse {
            header: self.auth_header(),
            perm,
        }))
    }

    async fn role_list(
        &self,
        request: Request<AuthRoleListRequest>,
    ) -> GrpcResult<AuthRoleListResponse> {
        self.precheck_admin(&request)?;
        self.node.read_barrier().await.map_err(st)?;
        let roles = self
            .node
            .shared()
            .read()
            .auth
            .roles
            .keys()
            .cloned()
            .collect();
        Ok(Response::new(AuthRoleListResponse {
            header: self.auth_header(),
            roles,
        }))
    }

    async fn role_delete(
        &self,
        request: Request<AuthRoleDeleteRequest>,
    ) -> GrpcResult<AuthRoleDeleteResponse> {
        let name = request.get_ref().role.clone();
        self.change(&request, AuthCommand::RoleDelete { name })
            .await?;
        header_only!(self, AuthRoleDeleteResponse)
    }

    async fn role_grant_permission(
        &self,
        request: Request<AuthRoleGrantPermissionRequest>,
    ) -> GrpcResult<AuthRoleGrantPermissionResponse> {
        let r = request.get_ref().clone();
        let p = r.perm.ok_or_else(|| st(AuthError::PermissionNotGiven))?;
        let kind = PermKind::from_pb(p.perm_type).ok_or_else(|| {
            Status::invalid_argument(format!(
                "etcdserver: unknown permission type {}",
                p.perm_type
            ))
        })?;
        let perm = Permission {
            kind,
            key: p.key,
            range_end: p.range_end,
        };
        self.change(
            &request,
            AuthCommand::RoleGrantPermission { name: r.name, perm },
        )
        .await?;
        header_only!(self, AuthRoleGrantPermissionResponse)
    }

    async fn role_revoke_permission(
        &self,
        request: Request<AuthRoleRevokePermissionRequest>,
    ) -> GrpcResult<AuthRoleRevokePermissionResponse> {
        let r = request.get_ref().clone();
        let cmd = AuthCommand::RoleRevokePermission {
            name: r.role,
            key: r.key,
            range_end: r.range_end,
        };
        self.change(&request, cmd).await?;
        header_only!(self, AuthRoleRevokePermissionResponse)
    }
}
