// tessera.hpp: a header-only C++17 wrapper over the Tessera C ABI (include/tessera.h).
//
// - RAII: tessera::Engine owns a tessera_engine and frees it; it is movable, not copyable.
//   Its methods are const and may be called from many threads at once, as the C functions.
// - Inputs are std::string_view (UTF-8; no NUL terminator needed).
// - Outputs are std::string (JSON records, tokens) and std::optional for lookups that may find
//   nothing (get_user, find_user_by_*, profile_image).
// - Failures throw tessera::Error, which carries the tessera_status code and the library's
//   last error message.
//
// Link with -ltessera (see docs/C_API.md). Secrets handed back as std::string (tokens) are
// the caller's to wipe; the wrapper wipes its own temporary buffers.
#ifndef TESSERA_HPP
#define TESSERA_HPP

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tessera.h"

namespace tessera {

/// A failed Tessera call: the status code plus the library's message.
class Error : public std::runtime_error {
public:
    Error(tessera_status code, const std::string &message)
        : std::runtime_error(message), code_(code) {}

    /// The tessera_status value (TESSERA_USER_NOT_FOUND, ...).
    tessera_status code() const noexcept { return code_; }

private:
    tessera_status code_;
};

namespace detail {

inline std::string last_error_message() {
    char buf[512];
    size_t len = 0;
    tessera_status st = tessera_last_error_message(buf, sizeof buf, &len);
    if (st == TESSERA_OK) {
        return std::string(buf, len);
    }
    if (st == TESSERA_BUFFER_TOO_SMALL) {
        std::string s(len + 1, '\0');
        if (tessera_last_error_message(s.data(), s.size(), &len) == TESSERA_OK) {
            s.resize(len);
            return s;
        }
    }
    return std::string();
}

inline void check(tessera_status st) {
    if (st != TESSERA_OK) {
        std::string msg = last_error_message();
        std::string what = std::string(tessera_status_str(st)) + " (code " +
                           std::to_string(static_cast<unsigned>(st)) + ")";
        if (!msg.empty()) {
            what += ": " + msg;
        }
        throw Error(st, what);
    }
}

inline void wipe(char *p, size_t n) noexcept {
    volatile char *v = p;
    for (size_t i = 0; i < n; i++) {
        v[i] = 0;
    }
}

/// Takes ownership of a tessera_string and copies it out.
inline std::string take(tessera_string *s) {
    struct Guard {
        tessera_string *s;
        ~Guard() { tessera_string_free(s); }
    } guard{s};
    return std::string(tessera_string_ptr(s), tessera_string_len(s));
}

}  // namespace detail

/// The library version ("0.1.0").
inline std::string version() { return tessera_version(); }

/// A verified session token.
struct VerifiedSession {
    std::string user_id;
    int64_t issued_at_ms = 0;
    int64_t expires_at_ms = 0;
    std::string key_id;
};

/// A verified access token.
struct VerifiedAccessToken {
    std::string user_id;
    uint64_t token_id = 0;
};

/// A freshly issued access token: shown once, only its digest is kept.
struct IssuedAccessToken {
    std::string token;
    uint64_t token_id = 0;
    /// The user's tokens revoked to stay within the per-user limit, oldest first: none below
    /// it, one at it, more when the limit was lowered since they were issued.
    std::vector<uint64_t> evicted_token_ids;
};

/// A freshly issued session token.
struct IssuedSession {
    std::string token;
    int64_t expires_at_ms = 0;
};

/// A successful login.
struct Authenticated {
    std::string user_id;
    tessera_auth_method method = TESSERA_AUTH_USER_ID_ONLY;
    uint64_t token_id = 0;
    int64_t expires_at_ms = 0;
};

/// A profile image.
struct ProfileImage {
    std::string bytes;
    std::string content_type;
};

/// An engine handle. Every method may be called from many threads at once.
class Engine {
public:
    /// An in-memory engine; `config_json` holds tessera::Config fields (empty: defaults).
    static Engine in_memory(std::string_view config_json = {}) {
        tessera_engine *e = nullptr;
        detail::check(config_json.empty()
                          ? tessera_engine_open_in_memory(&e)
                          : tessera_engine_open_in_memory_with_config(config_json.data(),
                                                                      config_json.size(), &e));
        return Engine(e);
    }

    /// A durable engine on the data directory `dir` (created if missing). `config_json` as
    /// for in_memory, plus an optional "sync_mode": "durable" (default) or {"relaxed_ms": N}.
    /// Throws Error with TESSERA_LOCKED when another engine has the directory open.
    static Engine open(std::string_view dir, std::string_view config_json = {}) {
        tessera_engine *e = nullptr;
        detail::check(tessera_engine_open(dir.data(), dir.size(), config_json.data(),
                                          config_json.size(), &e));
        return Engine(e);
    }

    /// A cluster node on the PostgreSQL database `conninfo` ("host=... dbname=..." or a
    /// postgresql:// URL), shared by every node of the service. `config_json` as for
    /// in_memory, plus an optional "cluster": {"max_staleness_ms": N or null,
    /// "poll_interval_ms": N, "log_retention": N}. Throws Error with TESSERA_UNAVAILABLE when
    /// the database cannot be reached.
    static Engine open_postgres(std::string_view conninfo, std::string_view config_json = {}) {
        tessera_engine *e = nullptr;
        detail::check(tessera_engine_open_postgres(conninfo.data(), conninfo.size(),
                                                   config_json.data(), config_json.size(), &e));
        return Engine(e);
    }

    /// Copies the whole state of `source` (users, tokens, devices, images, keys, counters)
    /// into this engine, which must be new; returns the number of users. Moves a data
    /// directory into a cluster, or backs a cluster up into a data directory.
    size_t import_from(const Engine &source) const {
        size_t users = 0;
        detail::check(tessera_engine_import_from(e_, source.e_, &users));
        return users;
    }

    /// A read-only engine on a damaged data directory, holding every record before the
    /// damage; its writes throw TESSERA_READ_ONLY. The second member is the damage as JSON
    /// ({"code": 51, "message": ...}), or nullopt when the directory was intact.
    static std::pair<Engine, std::optional<std::string>> open_salvage(
        std::string_view dir, std::string_view config_json = {}) {
        tessera_engine *e = nullptr;
        tessera_string *damage = nullptr;
        detail::check(tessera_engine_open_salvage(dir.data(), dir.size(), config_json.data(),
                                                  config_json.size(), &e, &damage));
        Engine engine(e);
        std::optional<std::string> d;
        if (damage != nullptr) {
            d = detail::take(damage);
        }
        return {std::move(engine), std::move(d)};
    }

    Engine(Engine &&other) noexcept : e_(std::exchange(other.e_, nullptr)) {}
    Engine &operator=(Engine &&other) noexcept {
        if (this != &other) {
            tessera_engine_free(e_);
            e_ = std::exchange(other.e_, nullptr);
        }
        return *this;
    }
    Engine(const Engine &) = delete;
    Engine &operator=(const Engine &) = delete;
    ~Engine() { tessera_engine_free(e_); }

    /// The C handle, for calls the wrapper does not cover.
    const tessera_engine *get() const noexcept { return e_; }

    /// Snapshot + fresh journal (see tessera_engine_compact); nothing in memory.
    void compact() const { detail::check(tessera_engine_compact(e_)); }

    /// Writes a consistent copy of the state into `dir` (which must not exist or be empty)
    /// while other threads keep reading and writing; it opens with Engine::open. Returns
    /// {"users": N, "files": N, "bytes": N} as JSON (see tessera_engine_backup_to).
    std::string backup_to(std::string_view dir) const {
        tessera_string *out = nullptr;
        detail::check(tessera_engine_backup_to(e_, dir.data(), dir.size(), &out));
        return detail::take(out);
    }

    /// Journal counters as JSON: {"records_synced", "syncs", "bytes_written",
    /// "torn_tail_bytes", "torn_tail_records"} (see tessera_engine_store_stats).
    std::string store_stats() const {
        tessera_string *out = nullptr;
        detail::check(tessera_engine_store_stats(e_, &out));
        return detail::take(out);
    }

    size_t user_count() const {
        size_t n = 0;
        detail::check(tessera_engine_user_count(e_, &n));
        return n;
    }

    // ----- users (JSON in and out) -----

    std::string create_user(std::string_view user_json) const {
        tessera_string *out = nullptr;
        detail::check(tessera_user_create(e_, user_json.data(), user_json.size(), &out));
        return detail::take(out);
    }

    /// The stored user, and whether this call created it.
    std::pair<std::string, bool> upsert_user(std::string_view user_json) const {
        tessera_string *out = nullptr;
        bool created = false;
        detail::check(
            tessera_user_upsert(e_, user_json.data(), user_json.size(), &created, &out));
        return {detail::take(out), created};
    }

    /// The user as JSON, or nullopt when there is no such user.
    std::optional<std::string> get_user(std::string_view user_id) const {
        tessera_string *out = nullptr;
        tessera_status st = tessera_user_get(e_, user_id.data(), user_id.size(), &out);
        if (st == TESSERA_USER_NOT_FOUND) {
            return std::nullopt;
        }
        detail::check(st);
        return detail::take(out);
    }

    /// The user with this handle (the "handle" of its JSON, the `sub` of its session tokens)
    /// as JSON, or nullopt when no live user has it.
    std::optional<std::string> get_user_by_handle(uint64_t handle) const {
        tessera_string *out = nullptr;
        tessera_status st = tessera_user_get_by_handle(e_, handle, &out);
        if (st == TESSERA_USER_NOT_FOUND) {
            return std::nullopt;
        }
        detail::check(st);
        return detail::take(out);
    }

    std::string update_user(std::string_view user_id, std::string_view patch_json) const {
        tessera_string *out = nullptr;
        detail::check(tessera_user_update(e_, user_id.data(), user_id.size(), patch_json.data(),
                                          patch_json.size(), &out));
        return detail::take(out);
    }

    void delete_user(std::string_view user_id) const {
        detail::check(tessera_user_delete(e_, user_id.data(), user_id.size()));
    }

    std::string deactivate_user(std::string_view user_id) const {
        tessera_string *out = nullptr;
        detail::check(tessera_user_deactivate(e_, user_id.data(), user_id.size(), &out));
        return detail::take(out);
    }

    std::string reactivate_user(std::string_view user_id) const {
        tessera_string *out = nullptr;
        detail::check(tessera_user_reactivate(e_, user_id.data(), user_id.size(), &out));
        return detail::take(out);
    }

    /// One page: {"users": [...], "next_cursor": ...}.
    std::string list_users(std::string_view query_json = {}) const {
        tessera_string *out = nullptr;
        detail::check(tessera_user_list(e_, query_json.empty() ? nullptr : query_json.data(),
                                        query_json.size(), &out));
        return detail::take(out);
    }

    std::optional<std::string> find_user_by_discovery_key(std::string_view key) const {
        tessera_string *out = nullptr;
        tessera_status st =
            tessera_user_find_by_discovery_key(e_, key.data(), key.size(), &out);
        if (st == TESSERA_USER_NOT_FOUND) {
            return std::nullopt;
        }
        detail::check(st);
        return detail::take(out);
    }

    std::optional<std::string> find_user_by_push_token(std::string_view push_token) const {
        tessera_string *out = nullptr;
        tessera_status st =
            tessera_user_find_by_push_token(e_, push_token.data(), push_token.size(), &out);
        if (st == TESSERA_DEVICE_NOT_FOUND) {
            return std::nullopt;
        }
        detail::check(st);
        return detail::take(out);
    }

    /// Login: token may be nullopt (id-only login, where configured).
    Authenticated authenticate(std::string_view user_id,
                               std::optional<std::string_view> token = std::nullopt) const {
        tessera_authenticated a;
        detail::check(tessera_user_authenticate(e_, user_id.data(), user_id.size(),
                                                token ? token->data() : nullptr,
                                                token ? token->size() : 0, &a));
        return Authenticated{std::string(a.user_id, a.user_id_len), a.method, a.token_id,
                             a.expires_at_ms};
    }

    // ----- profile images -----

    std::string upload_profile_image(std::string_view user_id, std::string_view bytes) const {
        tessera_string *out = nullptr;
        detail::check(tessera_profile_image_upload(
            e_, user_id.data(), user_id.size(), reinterpret_cast<const uint8_t *>(bytes.data()),
            bytes.size(), &out));
        return detail::take(out);
    }

    std::optional<ProfileImage> profile_image(std::string_view sha256_hex) const {
        tessera_bytes *out = nullptr;
        const char *type = nullptr;
        tessera_status st =
            tessera_profile_image_get(e_, sha256_hex.data(), sha256_hex.size(), &out, &type);
        if (st == TESSERA_IMAGE_NOT_FOUND) {
            return std::nullopt;
        }
        detail::check(st);
        ProfileImage img{std::string(reinterpret_cast<const char *>(tessera_bytes_ptr(out)),
                                     tessera_bytes_len(out)),
                         type};
        tessera_bytes_free(out);
        return img;
    }

    // ----- devices -----

    std::string add_device(std::string_view user_id, std::string_view device_json) const {
        tessera_string *out = nullptr;
        detail::check(tessera_device_add(e_, user_id.data(), user_id.size(), device_json.data(),
                                         device_json.size(), &out));
        return detail::take(out);
    }

    std::string list_devices(std::string_view user_id) const {
        tessera_string *out = nullptr;
        detail::check(tessera_device_list(e_, user_id.data(), user_id.size(), &out));
        return detail::take(out);
    }

    std::string remove_device(std::string_view user_id, std::string_view push_token) const {
        tessera_string *out = nullptr;
        detail::check(tessera_device_remove(e_, user_id.data(), user_id.size(),
                                            push_token.data(), push_token.size(), &out));
        return detail::take(out);
    }

    // ----- access tokens -----

    IssuedAccessToken issue_access_token(
        std::string_view user_id, std::optional<std::string_view> label = std::nullopt) const {
        char buf[TESSERA_ACCESS_TOKEN_LEN + 1];
        std::array<uint64_t, TESSERA_ACCESS_TOKENS_PER_USER_MAX> evicted;
        size_t len = 0, n_evicted = 0;
        uint64_t id = 0;
        detail::check(tessera_access_token_issue(
            e_, user_id.data(), user_id.size(), label ? label->data() : nullptr,
            label ? label->size() : 0, buf, sizeof buf, &len, &id, evicted.data(),
            evicted.size(), &n_evicted));
        n_evicted = n_evicted < evicted.size() ? n_evicted : evicted.size();
        IssuedAccessToken out{std::string(buf, len), id,
                              std::vector<uint64_t>(evicted.begin(), evicted.begin() + n_evicted)};
        detail::wipe(buf, sizeof buf);
        return out;
    }

    VerifiedAccessToken verify_access_token(std::string_view token) const {
        tessera_verified_access_token v;
        detail::check(tessera_access_token_verify(e_, token.data(), token.size(), &v));
        return VerifiedAccessToken{std::string(v.user_id, v.user_id_len), v.token_id};
    }

    /// JSON array of {"id", "created_at_ms", "label"}.
    std::string list_access_tokens(std::string_view user_id) const {
        tessera_string *out = nullptr;
        detail::check(tessera_access_token_list(e_, user_id.data(), user_id.size(), &out));
        return detail::take(out);
    }

    void revoke_access_token(std::string_view user_id, uint64_t token_id) const {
        detail::check(tessera_access_token_revoke(e_, user_id.data(), user_id.size(), token_id));
    }

    size_t revoke_all_access_tokens(std::string_view user_id) const {
        size_t n = 0;
        detail::check(tessera_access_token_revoke_all(e_, user_id.data(), user_id.size(), &n));
        return n;
    }

    // ----- session tokens -----

    /// A session token with the configured default lifetime.
    IssuedSession issue_session_token(std::string_view user_id) const {
        return issue_session(user_id, nullptr);
    }

    /// A session token expiring at `expires_at_ms` (ms since the Unix epoch, rounded down to
    /// whole seconds), taken literally: 0 or any other past value throws
    /// TESSERA_INVALID_EXPIRY, as does one beyond the configured maximum.
    IssuedSession issue_session_token(std::string_view user_id, int64_t expires_at_ms) const {
        return issue_session(user_id, &expires_at_ms);
    }

    VerifiedSession verify_session_token(std::string_view token) const {
        tessera_verified_session v;
        detail::check(tessera_session_token_verify(e_, token.data(), token.size(), &v));
        return VerifiedSession{std::string(v.user_id, v.user_id_len), v.issued_at_ms,
                               v.expires_at_ms, std::string(v.key_id)};
    }

    void revoke_sessions(std::string_view user_id) const {
        detail::check(tessera_session_token_revoke(e_, user_id.data(), user_id.size()));
    }

    void revoke_all_sessions() const { detail::check(tessera_session_token_revoke_everyone(e_)); }

    // ----- signing keys -----

    std::string rotate_key() const {
        tessera_string *out = nullptr;
        detail::check(tessera_key_rotate(e_, &out));
        return detail::take(out);
    }

    void retire_key(std::string_view key_id) const {
        detail::check(tessera_key_retire(e_, key_id.data(), key_id.size()));
    }

    /// SECRET: the 32-byte HMAC key `key_id`, for verifying session tokens with another HS256
    /// JWT library. Whoever holds it can mint tokens; wipe the array when done.
    std::array<uint8_t, TESSERA_KEY_SECRET_LEN> export_key(std::string_view key_id) const {
        std::array<uint8_t, TESSERA_KEY_SECRET_LEN> key{};
        detail::check(tessera_key_export(e_, key_id.data(), key_id.size(), key.data()));
        return key;
    }

    std::string list_keys() const {
        tessera_string *out = nullptr;
        detail::check(tessera_key_list(e_, &out));
        return detail::take(out);
    }

    // ----- events -----

    /// JSON array of up to `max` events, oldest first.
    std::string drain_events(size_t max = 1024) const {
        tessera_string *out = nullptr;
        detail::check(tessera_event_drain(e_, max, &out));
        return detail::take(out);
    }

    uint64_t dropped_events() const {
        uint64_t n = 0;
        detail::check(tessera_event_dropped_count(e_, &n));
        return n;
    }

private:
    IssuedSession issue_session(std::string_view user_id, const int64_t *expires_at_ms) const {
        char buf[TESSERA_SESSION_TOKEN_MAX_LEN + 1];
        size_t len = 0;
        int64_t exp = 0;
        tessera_status st =
            expires_at_ms == nullptr
                ? tessera_session_token_issue_default(e_, user_id.data(), user_id.size(), buf,
                                                      sizeof buf, &len, &exp)
                : tessera_session_token_issue(e_, user_id.data(), user_id.size(), *expires_at_ms,
                                              buf, sizeof buf, &len, &exp);
        detail::check(st);
        IssuedSession out{std::string(buf, len), exp};
        detail::wipe(buf, sizeof buf);
        return out;
    }

    explicit Engine(tessera_engine *e) noexcept : e_(e) {}
    tessera_engine *e_;
};

}  // namespace tessera

#endif  // TESSERA_HPP
