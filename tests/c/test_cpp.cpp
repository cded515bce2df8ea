// Tests bindings/cpp/tessera.hpp (and so tessera.h compiled as C++17).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "tessera.hpp"

static int passed = 0;
static int failed = 0;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (cond) {                                                                   \
            passed++;                                                                 \
        } else {                                                                      \
            failed++;                                                                 \
            std::fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);      \
        }                                                                             \
    } while (0)

template <typename F>
static tessera_status code_of(F &&f) {
    try {
        f();
    } catch (const tessera::Error &e) {
        return e.code();
    }
    return TESSERA_OK;
}

int main() {
    CHECK(tessera::version() == TESSERA_VERSION_STRING);
    tessera::Engine engine = tessera::Engine::in_memory();

    std::string alice = engine.create_user(R"({"user_id": "alice", "nickname": "Alice"})");
    CHECK(alice.find("\"user_id\":\"alice\"") != std::string::npos);
    auto [bob, created] = engine.upsert_user(R"({"user_id": "bob", "nickname": "Bob"})");
    CHECK(created && bob.find("Bob") != std::string::npos);
    CHECK(engine.user_count() == 2);
    CHECK(engine.get_user("alice").has_value());
    CHECK(!engine.get_user("nobody").has_value());
    CHECK(engine.get_user_by_handle(1).value() == engine.get_user("alice").value());
    CHECK(engine.get_user("bob").value().find("\"handle\":2") != std::string::npos);
    CHECK(!engine.get_user_by_handle(3).has_value());
    CHECK(code_of([&] { engine.create_user(R"({"user_id": "alice", "nickname": "A"})"); }) ==
          TESSERA_USER_ALREADY_EXISTS);
    try {
        engine.update_user("nobody", "{}");
        CHECK(false);
    } catch (const tessera::Error &e) {
        CHECK(e.code() == TESSERA_USER_NOT_FOUND);
        CHECK(std::string(e.what()).find("nobody") != std::string::npos);
    }
    CHECK(engine.update_user("alice", R"({"tags": ["x"]})").find("\"tags\":[\"x\"]") !=
          std::string::npos);
    CHECK(engine.list_users(R"({"limit": 1})").find("\"next_cursor\":\"") != std::string::npos);

    // Sessions.
    tessera::IssuedSession s = engine.issue_session_token("alice");
    CHECK(s.token.size() >= 119 && s.expires_at_ms > 0);
    tessera::VerifiedSession v = engine.verify_session_token(s.token);
    CHECK(v.user_id == "alice" && v.expires_at_ms == s.expires_at_ms && !v.key_id.empty());
    CHECK(engine.authenticate("alice", s.token).method == TESSERA_AUTH_SESSION_TOKEN);
    CHECK(code_of([&] { engine.authenticate("alice"); }) == TESSERA_TOKEN_REQUIRED);
    // An explicit expiry is literal: 0 is not "the default".
    CHECK(engine.issue_session_token("alice", s.expires_at_ms - 1000).expires_at_ms ==
          s.expires_at_ms - 1000);
    CHECK(code_of([&] { engine.issue_session_token("alice", 0); }) == TESSERA_INVALID_EXPIRY);
    CHECK(code_of([&] { engine.issue_session_token("alice", INT64_MIN); }) ==
          TESSERA_INVALID_EXPIRY);

    // Concurrent verification through one const Engine.
    {
        std::vector<std::thread> threads;
        std::vector<int> ok(4, 0);
        for (int t = 0; t < 4; t++) {
            threads.emplace_back([&, t] {
                for (int i = 0; i < 200; i++) {
                    ok[t] += engine.verify_session_token(s.token).user_id == "alice";
                }
            });
        }
        for (auto &th : threads) {
            th.join();
        }
        for (int n : ok) {
            CHECK(n == 200);
        }
    }

    engine.revoke_sessions("alice");
    CHECK(code_of([&] { engine.verify_session_token(s.token); }) == TESSERA_TOKEN_REVOKED);

    // Access tokens.
    tessera::IssuedAccessToken a = engine.issue_access_token("bob", "laptop");
    CHECK(a.token.size() == TESSERA_ACCESS_TOKEN_LEN && a.evicted_token_ids.empty());
    CHECK(engine.verify_access_token(a.token).token_id == a.token_id);
    CHECK(engine.list_access_tokens("bob").find("laptop") != std::string::npos);
    engine.revoke_access_token("bob", a.token_id);
    CHECK(code_of([&] { engine.verify_access_token(a.token); }) == TESSERA_INVALID_TOKEN);
    CHECK(engine.revoke_all_access_tokens("bob") == 0);
    {
        // At the limit, each issue evicts the oldest, reported by id.
        tessera::Engine two = tessera::Engine::in_memory(R"({"access_tokens_per_user": 2})");
        two.create_user(R"({"user_id": "c"})");
        uint64_t first = two.issue_access_token("c").token_id;
        CHECK(two.issue_access_token("c").evicted_token_ids.empty());
        CHECK(two.issue_access_token("c").evicted_token_ids == std::vector<uint64_t>{first});
    }

    // Devices and images.
    engine.add_device("bob", R"({"device_type": "web", "push_token": "w1"})");
    CHECK(engine.list_devices("bob").find("w1") != std::string::npos);
    CHECK(engine.find_user_by_push_token("w1").has_value());
    CHECK(!engine.find_user_by_push_token("w2").has_value());
    engine.remove_device("bob", "w1");
    const char png[] = "\x89PNG\r\n\x1a\nrest";
    std::string user = engine.upload_profile_image("bob", std::string_view(png, sizeof png - 1));
    size_t at = user.find("tessera://images/");
    CHECK(at != std::string::npos);
    if (at != std::string::npos) {
        auto img = engine.profile_image(user.substr(at + 17, 64));
        CHECK(img && img->content_type == "image/png" && img->bytes.size() == sizeof png - 1);
    }
    CHECK(!engine.profile_image(std::string(64, '0')).has_value());
    CHECK(!engine.find_user_by_discovery_key("k").has_value());

    // Keys and events.
    CHECK(engine.rotate_key().find("\"active\":true") != std::string::npos);
    CHECK(engine.list_keys().find("\"active\":false") != std::string::npos);
    CHECK(code_of([&] { engine.retire_key("zzz"); }) == TESSERA_KEY_NOT_FOUND);
    engine.deactivate_user("bob");
    engine.reactivate_user("bob");
    engine.revoke_all_sessions();
    CHECK(engine.drain_events().find("all_sessions_revoked") != std::string::npos);
    CHECK(engine.dropped_events() == 0);
    engine.delete_user("bob");
    CHECK(engine.user_count() == 1);

    // Move semantics: the moved-from engine is empty, the handle moves.
    tessera::Engine other = std::move(engine);
    CHECK(other.user_count() == 1);
    CHECK(code_of([] { tessera::Engine::in_memory(R"({"nope": 1})"); }) == TESSERA_INVALID_JSON);

    // A durable engine: open, write, close, reopen; one writer per directory; salvage.
    {
        char tmpl[] = "/tmp/tessera-cpp-test-XXXXXX";
        if (mkdtemp(tmpl) == nullptr) {
            CHECK(false);
        } else {
            const std::string dir = std::string(tmpl) + "/data";
            std::string token;
            std::string kid;
            std::array<uint8_t, TESSERA_KEY_SECRET_LEN> key{};
            {
                tessera::Engine d = tessera::Engine::open(dir);
                d.create_user(R"({"user_id": "carl", "nickname": "Carl"})");
                token = d.issue_session_token("carl").token;
                kid = d.verify_session_token(token).key_id;
                key = d.export_key(kid);
                CHECK(key != decltype(key){});
                CHECK(code_of([&] { d.export_key("zzz"); }) == TESSERA_KEY_NOT_FOUND);
                CHECK(code_of([&] { tessera::Engine::open(dir); }) == TESSERA_LOCKED);
                CHECK(d.store_stats().find("\"syncs\":") != std::string::npos);
                d.compact();
                CHECK(d.backup_to(std::string(tmpl) + "/backup").find("\"users\":1") !=
                      std::string::npos);
                CHECK(code_of([&] { d.backup_to(dir); }) == TESSERA_INVALID_ARGUMENT);
            }
            CHECK(tessera::Engine::open(std::string(tmpl) + "/backup").get_user("carl"));
            {
                tessera::Engine d = tessera::Engine::open(dir, R"({"sync_mode": {"relaxed_ms": 5}})");
                CHECK(d.get_user("carl").has_value());
                CHECK(d.verify_session_token(token).user_id == "carl");
                CHECK(d.export_key(kid) == key);
            }
            {
                auto [s, damage] = tessera::Engine::open_salvage(dir);
                CHECK(!damage.has_value() && s.user_count() == 1);
                CHECK(code_of([&] { s.revoke_sessions("carl"); }) == TESSERA_READ_ONLY);
            }
            CHECK(code_of([] { tessera::Engine::open(""); }) == TESSERA_INVALID_ARGUMENT);
            std::filesystem::remove_all(tmpl);
        }
    }

    std::printf("test_cpp: %d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
