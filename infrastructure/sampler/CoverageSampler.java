import java.io.BufferedReader;
import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.jacoco.core.analysis.Analyzer;
import org.jacoco.core.analysis.CoverageBuilder;
import org.jacoco.core.analysis.IBundleCoverage;
import org.jacoco.core.analysis.ICounter;
import org.jacoco.core.tools.ExecDumpClient;
import org.jacoco.core.tools.ExecFileLoader;
import org.jacoco.report.IReportVisitor;
import org.jacoco.report.csv.CSVFormatter;

/**
 * Samples cumulative coverage of a running service from the JaCoCo agent's tcpserver.
 *
 * <p>Every interval it dumps the execution data without resetting it, analyses the service's
 * classes against it and appends one row to {@code series.csv}; it also replaces
 * {@code jacoco.exec} and {@code final.csv} (per-class CSV) atomically, so the latest dump is on
 * disk even if the container is killed. When standard input reaches end of file (the supervisor
 * closes it on shutdown) it takes one last sample and exits.
 *
 * <p>Arguments: host port intervalSeconds outputDir classPath[:classPath...]
 */
public final class CoverageSampler {

    static final String HEADER = "epoch,line_covered,line_missed,branch_covered,branch_missed,"
            + "method_covered,method_missed,instruction_covered,instruction_missed";

    private final String host;
    private final int port;
    private final File outDir;
    private final List<File> classPaths = new ArrayList<>();

    CoverageSampler(String host, int port, File outDir, String classPath) {
        this.host = host;
        this.port = port;
        this.outDir = outDir;
        for (String part : classPath.split(":")) {
            if (!part.isEmpty()) {
                classPaths.add(new File(part));
            }
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 5) {
            System.err.println("usage: CoverageSampler HOST PORT INTERVAL_SECONDS OUT_DIR CLASSPATHS");
            System.exit(2);
        }
        CoverageSampler sampler = new CoverageSampler(
                args[0], Integer.parseInt(args[1]), new File(args[3]), args[4]);
        long intervalMillis = Math.max(100L, (long) (Double.parseDouble(args[2]) * 1000));
        sampler.run(intervalMillis);
    }

    void run(long intervalMillis) throws InterruptedException, IOException {
        if (!outDir.isDirectory() && !outDir.mkdirs()) {
            throw new IOException("cannot create " + outDir);
        }
        for (File path : classPaths) {
            if (!path.exists()) {
                log("warning: class path " + path + " does not exist");
            }
        }
        File series = new File(outDir, "series.csv");
        if (!series.exists() || series.length() == 0) {
            appendLine(series, HEADER);
        }
        final CountDownLatch stop = new CountDownLatch(1);
        Thread stdinWatcher = new Thread(() -> {
            try (BufferedReader in = new BufferedReader(
                    new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
                while (in.readLine() != null) {
                    // any line is ignored; end of file means "final sample, then exit"
                }
            } catch (IOException ignored) {
                // a broken pipe means the same as end of file
            }
            stop.countDown();
        }, "stdin-watcher");
        stdinWatcher.setDaemon(true);
        stdinWatcher.start();

        // The agent's tcpserver opens when the service's JVM starts: until the first dump succeeds,
        // retry quickly and quietly, so the series starts with the service, not an interval later.
        long next = System.currentTimeMillis();
        while (stop.getCount() > 0) {
            next = System.currentTimeMillis();
            try {
                sample(series);
                break;
            } catch (IOException | RuntimeException e) {
                if (stop.await(250, TimeUnit.MILLISECONDS)) {
                    break;
                }
            }
        }
        // The grid starts at the first sample's start, not its end (the first analysis is slow).
        next += intervalMillis;
        while (true) {
            long wait = next - System.currentTimeMillis();
            if (wait > 0 && stop.await(wait, TimeUnit.MILLISECONDS)) {
                break;
            }
            if (stop.getCount() == 0) {
                break;
            }
            next += intervalMillis;
            sampleQuietly(series, 1);
            // A slow analysis must not make samples pile up: skip missed slots.
            long now = System.currentTimeMillis();
            while (next <= now) {
                next += intervalMillis;
            }
        }
        // Final sample: retry a few times, the service may be busy at shutdown.
        if (!sampleQuietly(series, 3)) {
            log("final sample failed");
            System.exit(1);
        }
        log("final sample written");
    }

    private boolean sampleQuietly(File series, int attempts) {
        for (int i = 1; i <= attempts; i++) {
            try {
                sample(series);
                return true;
            } catch (IOException | RuntimeException e) {
                log("sample failed (attempt " + i + "): " + e);
                try {
                    Thread.sleep(200);
                } catch (InterruptedException ie) {
                    Thread.currentThread().interrupt();
                    return false;
                }
            }
        }
        return false;
    }

    private void sample(File series) throws IOException {
        ExecDumpClient client = new ExecDumpClient() {
            @Override
            protected void onConnecting(java.net.InetAddress address, int p) {
                // quiet: one line per sample would flood the container log
            }
        };
        client.setDump(true);
        client.setReset(false);
        client.setRetryCount(0);
        double epoch = System.currentTimeMillis() / 1000.0;
        ExecFileLoader loader = client.dump(host, port);

        CoverageBuilder builder = new CoverageBuilder();
        Analyzer analyzer = new Analyzer(loader.getExecutionDataStore(), builder);
        for (File path : classPaths) {
            if (path.exists()) {
                analyzer.analyzeAll(path);
            }
        }
        IBundleCoverage bundle = builder.getBundle("service");

        File execTmp = new File(outDir, ".jacoco.exec.tmp");
        loader.save(execTmp, false);
        Files.move(execTmp.toPath(), new File(outDir, "jacoco.exec").toPath(),
                StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);

        File csvTmp = new File(outDir, ".final.csv.tmp");
        try (OutputStream out = new FileOutputStream(csvTmp)) {
            IReportVisitor visitor = new CSVFormatter().createVisitor(out);
            visitor.visitInfo(loader.getSessionInfoStore().getInfos(),
                    loader.getExecutionDataStore().getContents());
            visitor.visitBundle(bundle, null);
            visitor.visitEnd();
        }
        Files.move(csvTmp.toPath(), new File(outDir, "final.csv").toPath(),
                StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);

        appendLine(series, String.format(Locale.ROOT, "%.3f,%s,%s,%s,%s", epoch,
                counter(bundle.getLineCounter()), counter(bundle.getBranchCounter()),
                counter(bundle.getMethodCounter()), counter(bundle.getInstructionCounter())));
    }

    private static String counter(ICounter c) {
        return c.getCoveredCount() + "," + c.getMissedCount();
    }

    private static void appendLine(File file, String line) throws IOException {
        try (FileOutputStream fos = new FileOutputStream(file, true);
             Writer w = new OutputStreamWriter(fos, StandardCharsets.UTF_8)) {
            w.write(line);
            w.write('\n');
            w.flush();
            fos.getFD().sync();
        }
    }

    private static void log(String message) {
        System.err.println("[coverage-sampler] " + message);
    }
}
