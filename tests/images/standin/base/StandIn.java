// A stand-in for a benchmark service, for the image tests only: answers every path with 200 and a
// small JSON body (with an accessToken and a JSESSIONID cookie, so the APIs' login steps get a
// token), listens on -Dserver.port (like a Spring Boot jar), and, configured like the real jar, reads
// its database URL from classes/application.properties (spring.datasource.url or
// spring.data.mongodb.uri; a -D system property of the same name wins, as in Spring Boot) and exits
// at start when nothing answers at that host:port. Not the benchmark service.
import com.sun.net.httpserver.HttpServer;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.util.Properties;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

public class StandIn {
    public static void main(String[] args) throws Exception {
        Properties config = new Properties();
        try (InputStream in = StandIn.class.getResourceAsStream("/application.properties")) {
            if (in != null) {
                config.load(in);
            }
        }
        for (String key : new String[] {"spring.datasource.url", "spring.data.mongodb.uri"}) {
            String url = System.getProperty(key, config.getProperty(key));
            if (url == null) {
                continue;
            }
            Matcher m = Pattern.compile("//([^/:?]+):(\\d+)").matcher(url);
            if (!m.find()) {
                System.err.println("stand-in: no host:port in " + key + "=" + url);
                System.exit(2);
            }
            try (Socket socket = new Socket(m.group(1), Integer.parseInt(m.group(2)))) {
                System.out.println("stand-in: database " + key + "=" + url + " answers");
            } catch (Exception e) {
                System.err.println("stand-in: database " + key + "=" + url + " unreachable: " + e);
                System.exit(3);
            }
        }
        int port = Integer.parseInt(System.getProperty("server.port", config.getProperty("server.port", "8080")));
        HttpServer server = HttpServer.create(new InetSocketAddress(port), 0);
        server.createContext("/", exchange -> {
            byte[] body = ("{\"path\": \"" + exchange.getRequestURI().getPath()
                    + "\", \"accessToken\": \"standin-token\"}").getBytes(StandardCharsets.UTF_8);
            exchange.getResponseHeaders().add("Content-Type", "application/json");
            exchange.getResponseHeaders().add("Set-Cookie", "JSESSIONID=standin-session; Path=/");
            exchange.sendResponseHeaders(200, body.length);
            try (OutputStream out = exchange.getResponseBody()) {
                out.write(body);
            }
        });
        server.start();
        System.out.println("stand-in listening on " + port);
    }
}
