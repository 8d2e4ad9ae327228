import enum BanyanServer.RequestBody

/// The server's body reader, under a name Hummingbird's `RequestBody` does not shadow (and the
/// module name `BanyanServer` cannot qualify: the server's struct has the same name).
typealias BodyReader = RequestBody
