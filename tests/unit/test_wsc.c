/*
 * test_wsc.c -- clients/core/wsc.c, secbench's client side of MQTT over
 * WebSockets, against ws/ (the broker's side): the Upgrade request is
 * accepted by ws_handshake() and its 101 by wsc_response(); masked frames
 * from wsc decode through ws_feed(); the broker's frames (ws_frame_header)
 * decode through wsc_unframe(), split at every byte boundary.
 */
#include "clients/core/wsc.h"
#include "ws/ws.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t NONCE[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

/* The request wsc writes, answered by ws/; the answer checked by wsc. */
START_TEST(upgrade_round_trip)
{
    char req[WSC_REQUEST_MAX], key[25];
    size_t n = wsc_request(req, sizeof req, "127.0.0.1", 8080, "/mqtt", NONCE, key);
    ck_assert_uint_gt(n, 0);
    ck_assert_str_eq(key, "AQIDBAUGBwgJCgsMDQ4PEA==");
    ws_opts o = {0};
    ws_conn ws;
    ws_conn_init(&ws);
    char resp[WS_RESP_MAX];
    ws_hs r;
    ck_assert_int_eq(ws_handshake(&ws, &o, (const uint8_t *)req, n, resp, sizeof resp, &r), WS_OK);
    ck_assert_str_eq(r.subprotocol, "mqtt");
    char err[256];
    size_t used = 0;
    /* byte by byte: "need more" until the blank line */
    for (size_t i = 1; i < r.resp_len; i++)
        ck_assert_int_eq(wsc_response((const uint8_t *)resp, i, key, &used, err, sizeof err), 1);
    ck_assert_int_eq(wsc_response((const uint8_t *)resp, r.resp_len, key, &used, err, sizeof err),
                     0);
    ck_assert_uint_eq(used, r.resp_len);
    /* another key's answer, and a refusal, are refused */
    ck_assert_int_eq(wsc_response((const uint8_t *)resp, r.resp_len,
                                  "AAAAAAAAAAAAAAAAAAAAAA==", &used, err, sizeof err),
                     -1);
    ck_assert_ptr_nonnull(strstr(err, "Sec-WebSocket-Accept"));
    const char *no = "HTTP/1.1 426 Upgrade Required\r\nConnection: close\r\n\r\n";
    ck_assert_int_eq(wsc_response((const uint8_t *)no, strlen(no), key, &used, err, sizeof err),
                     -1);
    ck_assert_ptr_nonnull(strstr(err, "426"));
}
END_TEST

/* A masked frame from wsc, of each length encoding, decodes through ws_feed. */
START_TEST(client_frames_decode_on_the_server)
{
    static const size_t sizes[] = {0, 1, 125, 126, 65535, 65536, 70001};
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        size_t len = sizes[t];
        uint8_t *buf = malloc(len + WSC_HEADER_MAX), *want = malloc(len + 1);
        for (size_t i = 0; i < len; i++)
            want[i] = (uint8_t)(i * 7 + t);
        uint32_t mask = 0x9e3779b9u + (uint32_t)t;
        size_t hl = wsc_frame_header(buf, len, mask);
        memcpy(buf + hl, want, len);
        wsc_mask(buf + hl, len, mask);
        if (len >= 8) ck_assert(memcmp(buf + hl, want, 8) != 0);
        ws_opts o = {0};
        ws_conn ws;
        ws_conn_init(&ws);
        char resp[WS_RESP_MAX], req[WSC_REQUEST_MAX], key[25];
        ws_hs r;
        size_t n = wsc_request(req, sizeof req, "h", 1, "/", NONCE, key);
        ck_assert_int_eq(ws_handshake(&ws, &o, (uint8_t *)req, n, resp, sizeof resp, &r), WS_OK);
        ws_io io;
        ck_assert_int_eq(ws_feed(&ws, &o, buf, hl + len, buf, hl + len, &io), WS_OK);
        ck_assert_uint_eq(io.used, hl + len);
        ck_assert_uint_eq(io.out_len, len);
        ck_assert(len == 0 || memcmp(buf, want, len) == 0);
        free(buf);
        free(want);
    }
}
END_TEST

/* The broker's frames (and a ping between them) decode through wsc_unframe,
 * fed in two parts split at every position. */
START_TEST(server_frames_decode_on_the_client)
{
    uint8_t stream[600], want[600];
    size_t n = 0, w = 0;
    const size_t lens[] = {5, 0, 130, 300};
    for (size_t f = 0; f < 4; f++) {
        n += ws_frame_header(stream + n, 0x2, lens[f]);
        for (size_t i = 0; i < lens[f]; i++)
            stream[n++] = want[w++] = (uint8_t)(f * 31 + i);
        if (f == 1) {
            n += ws_frame_header(stream + n, 0x9, 3); /* a ping: dropped */
            memcpy(stream + n, "abc", 3);
            n += 3;
        }
    }
    for (size_t cut = 0; cut <= n; cut++) {
        uint8_t buf[600];
        memcpy(buf, stream, n);
        wsc_in st = {0};
        char err[128];
        long a = wsc_unframe(&st, buf, cut, err, sizeof err);
        ck_assert_int_ge(a, 0);
        uint8_t got[600];
        memcpy(got, buf, (size_t)a);
        long b = wsc_unframe(&st, buf + cut, n - cut, err, sizeof err);
        ck_assert_int_ge(b, 0);
        memcpy(got + a, buf + cut, (size_t)b);
        ck_assert_uint_eq((size_t)(a + b), w);
        ck_assert(memcmp(got, want, w) == 0);
    }
}
END_TEST

START_TEST(close_and_masked_server_frames_end_it)
{
    char err[128];
    uint8_t close_frame[] = {0x88, 0x02, 0x03, 0xe8};
    wsc_in st = {0};
    ck_assert_int_eq(wsc_unframe(&st, close_frame, sizeof close_frame, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "Close"));
    uint8_t masked[] = {0x82, 0x81, 1, 2, 3, 4, 5};
    wsc_in st2 = {0};
    ck_assert_int_eq(wsc_unframe(&st2, masked, sizeof masked, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "masked"));
}
END_TEST

static Suite *wsc_suite(void)
{
    Suite *s = suite_create("wsc");
    TCase *t = tcase_create("client");
    tcase_add_test(t, upgrade_round_trip);
    tcase_add_test(t, client_frames_decode_on_the_server);
    tcase_add_test(t, server_frames_decode_on_the_client);
    tcase_add_test(t, close_and_masked_server_frames_end_it);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(wsc_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
