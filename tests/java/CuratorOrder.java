/*
 * Session order and the common recipes through Apache Curator 5.4 and the ZooKeeper 3.8 Java
 * client, against any server given by connect string: zkd or Apache ZooKeeper (the oracle, which
 * must pass). Run by tests/py/test_curator.py through tests/java/run-curator-test.sh.
 *
 *   java CuratorOrder <connect-string> [seed]
 *
 * Parts (each prints "PART <name>: ok" or "PART <name>: <n> violations" and the first ones):
 *   pipeline   background setData/getData pairs on one client, all outstanding at once: every
 *              callback in submission order, every getData seeing exactly the client's last
 *              earlier setData (value, version, mzxid).
 *   background seeded background creates/deletes/exists/getData/setData/getChildren on one
 *              client, all outstanding at once, each result checked against a model of the
 *              client's own earlier operations.
 *   mutex      InterProcessMutex: threads on several clients contend; never two holders, and a
 *              versioned read-modify-write of a counter inside the lock never conflicts.
 *   leader     LeaderLatch: exactly one leader among several participants, never two; when the
 *              leader closes, leadership moves to one of the others.
 *   cache      CuratorCache: every create/change/delete of a child by the same client seen, in
 *              order, none missed (one at a time); then a burst of background changes: per node
 *              the events are in order and self-consistent, and the cache converges.
 * The last line is "RESULT: ok" (exit 0) or "RESULT: <n> violations" (exit 1). Exit 2: could
 * not connect or an unexpected exception.
 */

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReferenceArray;
import java.util.function.BooleanSupplier;

import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.api.BackgroundCallback;
import org.apache.curator.framework.api.CuratorEvent;
import org.apache.curator.framework.recipes.cache.ChildData;
import org.apache.curator.framework.recipes.cache.CuratorCache;
import org.apache.curator.framework.recipes.cache.CuratorCacheListener;
import org.apache.curator.framework.recipes.leader.LeaderLatch;
import org.apache.curator.framework.recipes.locks.InterProcessMutex;
import org.apache.curator.retry.ExponentialBackoffRetry;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.data.Stat;

public class CuratorOrder {
    static final long DEADLINE_MS = 30_000;
    static final int SHOW = 8;

    static String connect;
    static long seed;
    static int totalViolations = 0;

    /** Violations of one part. */
    static class Part {
        final String name;
        final List<String> bad = java.util.Collections.synchronizedList(new ArrayList<>());
        final long t0 = System.nanoTime();

        Part(String name) {
            this.name = name;
        }

        void fail(String fmt, Object... args) {
            bad.add(String.format(fmt, args));
        }

        void check(boolean ok, String fmt, Object... args) {
            if (!ok) {
                fail(fmt, args);
            }
        }

        void report() {
            double secs = (System.nanoTime() - t0) / 1e9;
            if (bad.isEmpty()) {
                System.out.printf("PART %s: ok (%.1f s)%n", name, secs);
            } else {
                System.out.printf("PART %s: %d violations (%.1f s)%n", name, bad.size(), secs);
                synchronized (bad) {
                    for (int i = 0; i < Math.min(SHOW, bad.size()); i++) {
                        System.out.println("  " + bad.get(i));
                    }
                }
                if (bad.size() > SHOW) {
                    System.out.println("  ... " + (bad.size() - SHOW) + " more");
                }
            }
            System.out.flush();
            totalViolations += bad.size();
        }
    }

    static byte[] b(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    static String s(byte[] b) {
        return b == null ? null : new String(b, StandardCharsets.UTF_8);
    }

    static CuratorFramework newClient() throws InterruptedException {
        CuratorFramework c = CuratorFrameworkFactory.builder()
            .connectString(connect)
            .sessionTimeoutMs(10_000)
            .connectionTimeoutMs(15_000)
            .retryPolicy(new ExponentialBackoffRetry(100, 5))
            .build();
        c.start();
        if (!c.blockUntilConnected((int) (DEADLINE_MS / 1000), TimeUnit.SECONDS)) {
            throw new IllegalStateException("could not connect to " + connect);
        }
        return c;
    }

    /** Waits for a condition with a deadline (polling); false if the deadline passed. */
    static boolean waitFor(BooleanSupplier cond, long ms) throws InterruptedException {
        long end = System.currentTimeMillis() + ms;
        while (!cond.getAsBoolean()) {
            if (System.currentTimeMillis() > end) {
                return false;
            }
            Thread.sleep(5);
        }
        return true;
    }

    // ---- pipeline: background setData/getData pairs -----------------------------------------------
    static void pipeline(CuratorFramework c) throws Exception {
        Part p = new Part("pipeline");
        final String path = "/cp/pipe";
        c.create().creatingParentsIfNeeded().forPath(path, b("init"));
        Stat init = c.checkExists().forPath(path);
        final int pairs = 1000;
        final int n = 2 * pairs;
        AtomicReferenceArray<CuratorEvent> results = new AtomicReferenceArray<>(n);
        ConcurrentLinkedQueue<Integer> order = new ConcurrentLinkedQueue<>();
        CountDownLatch done = new CountDownLatch(n);
        for (int i = 0; i < n; i++) {
            final int k = i;
            BackgroundCallback cb = (client, event) -> {
                results.set(k, event);
                order.add(k);
                done.countDown();
            };
            if (i % 2 == 0) {
                c.setData().inBackground(cb).forPath(path, b("v" + (i / 2)));
            } else {
                c.getData().inBackground(cb).forPath(path);
            }
        }
        if (!done.await(DEADLINE_MS, TimeUnit.MILLISECONDS)) {
            p.fail("only %d of %d callbacks within %d ms", n - done.getCount(), n, DEADLINE_MS);
        }
        int pos = 0;
        for (Integer k : order) {
            if (k != pos) {
                p.fail("callback %d arrived at position %d", k, pos);
                break;
            }
            pos++;
        }
        String lastValue = "init";
        int lastVersion = init.getVersion();
        long lastMzxid = init.getMzxid();
        for (int i = 0; i < n; i++) {
            CuratorEvent e = results.get(i);
            if (e == null) {
                continue;
            }
            if (e.getResultCode() != 0) {
                p.fail("op %d: result code %d", i, e.getResultCode());
                continue;
            }
            Stat st = e.getStat();
            if (i % 2 == 0) {
                p.check(st.getVersion() == lastVersion + 1, "setData #%d: version %d after %d",
                        i / 2, st.getVersion(), lastVersion);
                p.check(st.getMzxid() > lastMzxid, "setData #%d: mzxid %d not after %d",
                        i / 2, st.getMzxid(), lastMzxid);
                lastValue = "v" + (i / 2);
                lastVersion = st.getVersion();
                lastMzxid = st.getMzxid();
            } else {
                String got = s(e.getData());
                p.check(lastValue.equals(got) && st.getVersion() == lastVersion && st.getMzxid() == lastMzxid,
                        "getData after setData #%d: got %s (version %d, mzxid %d), the client's last write was %s (version %d, mzxid %d)",
                        i / 2, got, st.getVersion(), st.getMzxid(), lastValue, lastVersion, lastMzxid);
            }
        }
        p.report();
    }

    // ---- background: seeded mixed ops checked against a model ---------------------------------------
    static void background(CuratorFramework c) throws Exception {
        Part p = new Part("background");
        final String dir = "/cp/bg";
        c.create().creatingParentsIfNeeded().forPath(dir);
        Random rng = new Random(seed);
        final int n = 600;
        // Model: name -> [data, version] of the client's nodes, as of each op in submission order.
        TreeMap<String, Object[]> model = new TreeMap<>();
        List<String> desc = new ArrayList<>();
        List<Object> expected = new ArrayList<>();
        AtomicReferenceArray<CuratorEvent> results = new AtomicReferenceArray<>(n);
        ConcurrentLinkedQueue<Integer> order = new ConcurrentLinkedQueue<>();
        CountDownLatch done = new CountDownLatch(n);
        for (int i = 0; i < n; i++) {
            final int k = i;
            BackgroundCallback cb = (client, event) -> {
                results.set(k, event);
                order.add(k);
                done.countDown();
            };
            String name = "n" + rng.nextInt(8);
            String path = dir + "/" + name;
            Object[] node = model.get(name);
            int what = rng.nextInt(10);
            if (what < 2) {
                desc.add("create " + path);
                expected.add(node == null ? 0 : KeeperException.Code.NODEEXISTS.intValue());
                if (node == null) {
                    model.put(name, new Object[] {"c" + i, 0});
                }
                c.create().inBackground(cb).forPath(path, b("c" + i));
            } else if (what < 3) {
                desc.add("delete " + path);
                expected.add(node == null ? KeeperException.Code.NONODE.intValue() : 0);
                model.remove(name);
                c.delete().inBackground(cb).forPath(path);
            } else if (what < 5) {
                desc.add("setData " + path);
                if (node == null) {
                    expected.add(KeeperException.Code.NONODE.intValue());
                } else {
                    node[0] = "s" + i;
                    node[1] = (Integer) node[1] + 1;
                    expected.add(new Object[] {0, node[0], node[1]});
                }
                c.setData().inBackground(cb).forPath(path, b("s" + i));
            } else if (what < 7) {
                desc.add("getData " + path);
                expected.add(node == null ? (Object) KeeperException.Code.NONODE.intValue()
                             : new Object[] {0, node[0], node[1]});
                c.getData().inBackground(cb).forPath(path);
            } else if (what < 8) {
                desc.add("checkExists " + path);
                expected.add(node == null ? (Object) KeeperException.Code.NONODE.intValue()
                             : new Object[] {0, null, node[1]});
                c.checkExists().inBackground(cb).forPath(path);
            } else {
                desc.add("getChildren " + dir);
                expected.add(new TreeSet<>(model.keySet()));
                c.getChildren().inBackground(cb).forPath(dir);
            }
        }
        if (!done.await(DEADLINE_MS, TimeUnit.MILLISECONDS)) {
            p.fail("only %d of %d callbacks within %d ms", n - done.getCount(), n, DEADLINE_MS);
        }
        int pos = 0;
        for (Integer k : order) {
            if (k != pos) {
                p.fail("callback of op %d arrived at position %d", k, pos);
                break;
            }
            pos++;
        }
        for (int i = 0; i < n; i++) {
            CuratorEvent e = results.get(i);
            if (e == null) {
                continue;
            }
            Object exp = expected.get(i);
            String d = "op " + i + " " + desc.get(i);
            if (exp instanceof Integer) {
                p.check(e.getResultCode() == (Integer) exp, "%s: result code %d, expected %d", d, e.getResultCode(), exp);
            } else if (exp instanceof TreeSet) {
                TreeSet<String> got = e.getChildren() == null ? null : new TreeSet<>(e.getChildren());
                p.check(e.getResultCode() == 0 && exp.equals(got), "%s: got %s (code %d), expected %s",
                        d, got, e.getResultCode(), exp);
            } else {
                Object[] x = (Object[]) exp;
                Stat st = e.getStat();
                if (e.getResultCode() != 0 || st == null) {
                    p.fail("%s: result code %d, expected 0", d, e.getResultCode());
                    continue;
                }
                boolean dataOk = x[1] == null || desc.get(i).startsWith("setData") || x[1].equals(s(e.getData()));
                p.check(dataOk && st.getVersion() == (Integer) x[2], "%s: got %s version %d, expected %s version %d",
                        d, desc.get(i).startsWith("getData") ? s(e.getData()) : "-", st.getVersion(), x[1], x[2]);
            }
        }
        p.report();
    }

    // ---- mutex --------------------------------------------------------------------------------------
    static void mutex() throws Exception {
        Part p = new Part("mutex");
        final String lockPath = "/cp/lock";
        final String counter = "/cp/counter";
        final int clients = 3;
        final int threadsPerClient = 2;
        final int rounds = 12;
        List<CuratorFramework> cs = new ArrayList<>();
        for (int i = 0; i < clients; i++) {
            cs.add(newClient());
        }
        cs.get(0).create().creatingParentsIfNeeded().forPath(counter, b("0"));
        AtomicInteger inside = new AtomicInteger();
        AtomicInteger acquired = new AtomicInteger();
        List<Thread> threads = new ArrayList<>();
        for (int ci = 0; ci < clients; ci++) {
            for (int t = 0; t < threadsPerClient; t++) {
                final CuratorFramework c = cs.get(ci);
                final String who = "client " + ci + " thread " + t;
                Thread th = new Thread(() -> {
                    InterProcessMutex m = new InterProcessMutex(c, lockPath);
                    for (int r = 0; r < rounds; r++) {
                        try {
                            if (!m.acquire(DEADLINE_MS, TimeUnit.MILLISECONDS)) {
                                p.fail("%s: could not acquire the lock within %d ms", who, DEADLINE_MS);
                                return;
                            }
                            try {
                                int now = inside.incrementAndGet();
                                p.check(now == 1, "%s: %d holders of the mutex at once", who, now);
                                acquired.incrementAndGet();
                                Stat st = new Stat();
                                int v = Integer.parseInt(s(c.getData().storingStatIn(st).forPath(counter)));
                                try {
                                    c.setData().withVersion(st.getVersion()).forPath(counter, b(Integer.toString(v + 1)));
                                } catch (KeeperException.BadVersionException e) {
                                    p.fail("%s: counter changed under the lock (BadVersion at version %d)", who, st.getVersion());
                                }
                                inside.decrementAndGet();
                            } finally {
                                m.release();
                            }
                        } catch (Exception e) {
                            p.fail("%s: %s", who, e);
                            return;
                        }
                    }
                });
                threads.add(th);
            }
        }
        for (Thread th : threads) {
            th.start();
        }
        for (Thread th : threads) {
            th.join(DEADLINE_MS * 2);
            p.check(!th.isAlive(), "a mutex thread did not finish");
        }
        int total = clients * threadsPerClient * rounds;
        p.check(acquired.get() == total, "lock acquired %d times, expected %d", acquired.get(), total);
        String v = s(cs.get(0).getData().forPath(counter));
        p.check(Integer.toString(total).equals(v), "counter is %s, expected %d", v, total);
        List<String> left = cs.get(0).getChildren().forPath(lockPath);
        p.check(left.isEmpty(), "lock nodes left behind: %s", left);
        for (CuratorFramework c : cs) {
            c.close();
        }
        p.report();
    }

    // ---- leader -------------------------------------------------------------------------------------
    static void leader() throws Exception {
        Part p = new Part("leader");
        final String path = "/cp/leader";
        final int n = 4;
        List<CuratorFramework> cs = new ArrayList<>();
        List<LeaderLatch> latches = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            CuratorFramework c = newClient();
            cs.add(c);
            LeaderLatch l = new LeaderLatch(c, path, "p" + i);
            latches.add(l);
            l.start();
        }
        List<LeaderLatch> live = new ArrayList<>(latches);
        String previous = null;
        while (!live.isEmpty()) {
            final List<LeaderLatch> now = new ArrayList<>(live);
            final int[] most = {0};
            // Exactly one leader, and every participant names it; never two at once while waiting.
            boolean ok = waitFor(() -> {
                int leaders = 0;
                for (LeaderLatch l : now) {
                    if (l.hasLeadership()) {
                        leaders++;
                    }
                }
                most[0] = Math.max(most[0], leaders);
                if (leaders != 1) {
                    return false;
                }
                try {
                    String id = null;
                    for (LeaderLatch l : now) {
                        if (l.hasLeadership()) {
                            id = l.getId();
                        }
                    }
                    for (LeaderLatch l : now) {
                        if (!id.equals(l.getLeader().getId())) {
                            return false;
                        }
                    }
                } catch (Exception e) {
                    return false;
                }
                return true;
            }, DEADLINE_MS);
            p.check(most[0] <= 1, "%d participants had leadership at once", most[0]);
            if (!ok) {
                StringBuilder sb = new StringBuilder();
                for (LeaderLatch l : now) {
                    sb.append(l.getId()).append('=').append(l.hasLeadership()).append(' ');
                }
                p.fail("no single agreed leader among %d participants within %d ms: %s", now.size(), DEADLINE_MS, sb);
                break;
            }
            LeaderLatch lead = null;
            for (LeaderLatch l : now) {
                if (l.hasLeadership()) {
                    lead = l;
                }
            }
            p.check(!lead.getId().equals(previous), "leadership did not move from %s", previous);
            previous = lead.getId();
            lead.close();
            live.remove(lead);
        }
        for (LeaderLatch l : live) {
            l.close();
        }
        for (CuratorFramework c : cs) {
            c.close();
        }
        p.report();
    }

    // ---- cache --------------------------------------------------------------------------------------
    static final class Ev {
        final CuratorCacheListener.Type type;
        final String path;
        final String data;
        final int version;

        Ev(CuratorCacheListener.Type type, ChildData old, ChildData now) {
            this.type = type;
            ChildData d = now != null ? now : old;
            this.path = d == null ? null : d.getPath();
            this.data = d == null ? null : s(d.getData());
            this.version = d == null || d.getStat() == null ? -1 : d.getStat().getVersion();
        }

        @Override
        public String toString() {
            return type + " " + path + " " + data + " v" + version;
        }
    }

    static void cache(CuratorFramework c) throws Exception {
        Part p = new Part("cache");
        final String dir = "/cp/cache";
        c.create().creatingParentsIfNeeded().forPath(dir);
        BlockingQueue<Ev> q = new LinkedBlockingQueue<>();
        List<Ev> all = java.util.Collections.synchronizedList(new ArrayList<>());
        CountDownLatch initialized = new CountDownLatch(1);
        CuratorCache cache = CuratorCache.build(c, dir);
        cache.listenable().addListener(CuratorCacheListener.builder()
            .forAll((type, oldData, data) -> {
                Ev e = new Ev(type, oldData, data);
                if (e.path != null && e.path.startsWith(dir + "/")) {
                    q.add(e);
                    all.add(e);
                }
            })
            .forInitialized(initialized::countDown)
            .build());
        cache.start();
        if (!initialized.await(DEADLINE_MS, TimeUnit.MILLISECONDS)) {
            p.fail("cache not initialized within %d ms", DEADLINE_MS);
            p.report();
            return;
        }
        // One change at a time: each must be seen, next, exactly.
        List<String> want = new ArrayList<>();
        for (int j = 0; j < 8; j++) {
            String path = dir + "/c" + j;
            c.create().forPath(path, b("c" + j + "-0"));
            want.add("NODE_CREATED " + path + " c" + j + "-0 v0");
            expectNext(p, q, want.get(want.size() - 1));
            c.setData().forPath(path, b("c" + j + "-1"));
            want.add("NODE_CHANGED " + path + " c" + j + "-1 v1");
            expectNext(p, q, want.get(want.size() - 1));
            if (j % 2 == 0) {
                c.delete().forPath(path);
                want.add("NODE_DELETED " + path + " c" + j + "-1 v1");
                expectNext(p, q, want.get(want.size() - 1));
            }
        }
        // A burst of background changes by the same client, all outstanding at once.
        final int m = 20;
        Map<String, String> finalState = new HashMap<>();
        CountDownLatch done = new CountDownLatch(m * 3 + (m + 1) / 2);
        BackgroundCallback cb = (client, event) -> {
            if (event.getResultCode() != 0) {
                p.fail("burst %s %s: result code %d", event.getType(), event.getPath(), event.getResultCode());
            }
            done.countDown();
        };
        for (int j = 0; j < m; j++) {
            String path = dir + "/b" + j;
            c.create().inBackground(cb).forPath(path, b("v0"));
            c.setData().inBackground(cb).forPath(path, b("v1"));
            c.setData().inBackground(cb).forPath(path, b("v2"));
            if (j % 2 == 0) {
                c.delete().inBackground(cb).forPath(path);
            } else {
                finalState.put(path, "v2");
            }
        }
        if (!done.await(DEADLINE_MS, TimeUnit.MILLISECONDS)) {
            p.fail("burst: %d callbacks missing after %d ms", done.getCount(), DEADLINE_MS);
        }
        for (int j = 0; j < 8; j++) {
            if (j % 2 == 1) {
                finalState.put(dir + "/c" + j, "c" + j + "-1");
            }
        }
        // The cache's contents (updated first) and, replayed, its listener events (delivered after,
        // on another thread) must both reach the final state.
        boolean converged = waitFor(() -> storageView(cache, dir).equals(finalState), DEADLINE_MS);
        if (!converged) {
            p.fail("cache contents did not converge within %d ms: %s, expected %s", DEADLINE_MS,
                   new TreeMap<>(storageView(cache, dir)), new TreeMap<>(finalState));
        }
        converged = waitFor(() -> eventView(all).equals(finalState), DEADLINE_MS);
        if (!converged) {
            p.fail("cache events did not converge within %d ms: %s, expected %s", DEADLINE_MS,
                   new TreeMap<>(eventView(all)), new TreeMap<>(finalState));
        }
        // Then one more create: the cache handles its client's callbacks on one thread and calls
        // listeners in that order, so once this node's event is seen every earlier one has been.
        String marker = dir + "/end";
        c.create().forPath(marker, b("end"));
        expectNext(p, q, lastQueued(q, marker), "NODE_CREATED " + marker + " end v0");
        // Per node of the burst: created first, versions increasing, data as written at that version,
        // nothing after a delete, the last event showing the final state.
        Map<String, List<Ev>> byPath = new TreeMap<>();
        synchronized (all) {
            for (Ev e : all) {
                if (e.path.startsWith(dir + "/b")) {
                    byPath.computeIfAbsent(e.path, k -> new ArrayList<>()).add(e);
                }
            }
        }
        for (int j = 0; j < m; j++) {
            String path = dir + "/b" + j;
            List<Ev> evs = byPath.getOrDefault(path, new ArrayList<>());
            int lastVersion = -1;
            boolean deleted = false;
            for (int i = 0; i < evs.size(); i++) {
                Ev e = evs.get(i);
                p.check(!deleted, "%s: event after its delete: %s", path, evs);
                if (e.type == CuratorCacheListener.Type.NODE_DELETED) {
                    deleted = true;
                    continue;
                }
                p.check((i == 0) == (e.type == CuratorCacheListener.Type.NODE_CREATED),
                        "%s: events out of order: %s", path, evs);
                p.check(e.version > lastVersion, "%s: version went from %d to %d: %s", path, lastVersion, e.version, evs);
                p.check(("v" + e.version).equals(e.data), "%s: data %s at version %d: %s", path, e.data, e.version, evs);
                lastVersion = e.version;
            }
            if (j % 2 == 1) {
                p.check(!evs.isEmpty() && !deleted && lastVersion == 2, "%s: events %s do not end at v2", path, evs);
            } else {
                p.check(evs.isEmpty() || deleted, "%s: deleted, but the events %s do not end with its delete", path, evs);
            }
        }
        cache.close();
        p.report();
    }

    static void expectNext(Part p, BlockingQueue<Ev> q, String want) throws InterruptedException {
        Ev e = q.poll(DEADLINE_MS, TimeUnit.MILLISECONDS);
        String got = e == null ? "(none within " + DEADLINE_MS + " ms)" : e.toString();
        p.check(want.equals(got), "cache event: got %s, expected %s", got, want);
    }

    /** Skips queued events until the first one for `path` (waiting with a deadline) and returns it. */
    static Ev lastQueued(BlockingQueue<Ev> q, String path) throws InterruptedException {
        long end = System.currentTimeMillis() + DEADLINE_MS;
        while (true) {
            long left = end - System.currentTimeMillis();
            Ev e = left > 0 ? q.poll(left, TimeUnit.MILLISECONDS) : null;
            if (e == null || path.equals(e.path)) {
                return e;
            }
        }
    }

    static void expectNext(Part p, BlockingQueue<Ev> q, Ev e, String want) {
        String got = e == null ? "(none within " + DEADLINE_MS + " ms)" : e.toString();
        p.check(want.equals(got), "cache event: got %s, expected %s", got, want);
    }

    /** path -> data of the cache's current children of dir. */
    static Map<String, String> storageView(CuratorCache cache, String dir) {
        Map<String, String> view = new HashMap<>();
        cache.stream().forEach(d -> {
            if (d.getPath().startsWith(dir + "/")) {
                view.put(d.getPath(), s(d.getData()));
            }
        });
        return view;
    }

    /** path -> data after replaying the listener events recorded so far. */
    static Map<String, String> eventView(List<Ev> all) {
        Map<String, String> view = new HashMap<>();
        synchronized (all) {
            for (Ev e : all) {
                if (e.type == CuratorCacheListener.Type.NODE_DELETED) {
                    view.remove(e.path);
                } else {
                    view.put(e.path, e.data);
                }
            }
        }
        return view;
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: CuratorOrder <connect-string> [seed]");
            System.exit(2);
        }
        connect = args[0];
        seed = args.length > 1 ? Long.parseLong(args[1]) : 15;
        System.out.println("connect " + connect + " seed " + seed);
        try {
            CuratorFramework c = newClient();
            pipeline(c);
            background(c);
            mutex();
            leader();
            cache(c);
            c.close();
        } catch (Exception e) {
            System.out.println("RESULT: error " + e);
            e.printStackTrace(System.out);
            System.out.flush();
            System.exit(2);
        }
        if (totalViolations == 0) {
            System.out.println("RESULT: ok");
        } else {
            System.out.println("RESULT: " + totalViolations + " violations");
        }
        System.out.flush();
        // Curator/ZooKeeper leave non-daemon threads behind in some versions.
        System.exit(totalViolations == 0 ? 0 : 1);
    }
}
