//! Data as a service: what third-party programs may ask of a tenant's database. The HTTP
//! handlers in `api::data` parse and authorize; the rules live here.

pub mod query;
