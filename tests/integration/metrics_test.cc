// Every daemon serves Prometheus metrics on its metrics port: requests by command and status,
// bytes in and out, a latency histogram, connections, and disk space per store path.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "common/net/blocking_conn.h"
#include "tests/harness/harness.h"

namespace depot::testing {
namespace {

// A plain HTTP/1.0 GET over a socket (the test must not depend on an HTTP client library).
std::string HttpGet(int port, const std::string& path, int* status) {
  auto conn = net::BlockingConn::Connect("127.0.0.1", port, 2000);
  if (!conn.ok()) return "";
  std::string req = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (!(*conn)->SendAll(req.data(), req.size()).ok()) return "";
  std::string out;
  char c;
  while ((*conn)->RecvExact(&c, 1).ok()) out.push_back(c);
  *status = out.size() > 12 ? std::atoi(out.c_str() + 9) : 0;
  size_t body = out.find("\r\n\r\n");
  return body == std::string::npos ? "" : out.substr(body + 4);
}

TEST(MetricsTest, DaemonsExposeRequestByteLatencyConnectionAndDiskMetrics) {
  MiniCluster cluster;
  ASSERT_TRUE(cluster.Start().ok());
  auto client = cluster.NewClient();
  auto id = client->UploadBuffer(std::string(5000, 'm'), {});
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(client->DownloadToBuffer(*id).ok());
  EXPECT_FALSE(client->DownloadToBuffer("group1/M00/00/00/fwAAAWsJFUqAOD_FAAAADIJ3Nzo492.txt").ok());

  int status = 0;
  // A request is counted when its reply has gone out, so the client can see the reply a moment
  // before the counter moves: wait (with a deadline) for the last one to be counted.
  std::string storage;
  const std::string last = "depot_requests_total{daemon=\"storage\",cmd=\"14\",status=\"2\"} 1";
  for (int i = 0; i < 100; ++i) {
    storage = HttpGet(cluster.storage(0, 0).metrics_port(), "/metrics", &status);
    if (status == 200 && storage.find(last) != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(status, 200);
  // Upload (cmd 11) and download (cmd 14) succeeded; the missing file got status 2 (ENOENT).
  EXPECT_NE(storage.find("depot_requests_total{daemon=\"storage\",cmd=\"11\",status=\"0\"} 1"),
            std::string::npos)
      << storage;
  EXPECT_NE(storage.find("depot_requests_total{daemon=\"storage\",cmd=\"14\",status=\"0\"} 1"),
            std::string::npos);
  EXPECT_NE(storage.find("depot_requests_total{daemon=\"storage\",cmd=\"14\",status=\"2\"} 1"),
            std::string::npos);
  EXPECT_NE(storage.find("depot_request_duration_seconds_bucket{daemon=\"storage\",cmd=\"11\""), std::string::npos);
  EXPECT_NE(storage.find("depot_bytes_received_total"), std::string::npos);
  EXPECT_NE(storage.find("depot_bytes_sent_total"), std::string::npos);
  EXPECT_NE(storage.find("depot_connections"), std::string::npos);
  EXPECT_NE(storage.find("depot_store_path_free_bytes{store_path=\"0\"}"), std::string::npos);
  EXPECT_NE(storage.find("depot_store_path_total_bytes{store_path=\"0\"}"), std::string::npos);

  std::string tracker = HttpGet(cluster.tracker(0).metrics_port(), "/metrics", &status);
  ASSERT_EQ(status, 200);
  EXPECT_NE(tracker.find("depot_requests_total{daemon=\"tracker\",cmd=\"101\",status=\"0\"} 1"),
            std::string::npos)
      << tracker;
  // Join (210) and heartbeats (211) are counted too.
  EXPECT_NE(tracker.find("cmd=\"211\""), std::string::npos);

  HttpGet(cluster.storage(0, 0).metrics_port(), "/healthz", &status);
  EXPECT_EQ(status, 200);
}

}  // namespace
}  // namespace depot::testing
